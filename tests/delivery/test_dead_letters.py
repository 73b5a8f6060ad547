"""What the server refuses for good: a dead letter (the document and the server's
OperationOutcome under dead/), the rest delivered, that patient's later documents held in
order; delivered after the fix, by re-queueing (``retry_dead``) or by a corrected document
queued under the same key."""

from __future__ import annotations

import re
import time
from collections import Counter
from pathlib import Path

import httpx
import orjson

from leukofhir.delivery import Document, SqliteOutbox
from leukofhir.delivery.deadletter import dead_letter_name
from leukofhir.delivery.keys import patient_key
from tests.delivery.helpers import DOCS, SOURCE, deliver, documents
from tests.fhirserver import FhirServer


def invalid(data: bytes) -> bytes:
    """The Bundle with its first Observation's status made "finished" (not in the value
    set: the server answers 400)."""
    bundle = orjson.loads(data)
    observation = next(e for e in bundle["entry"] if e["resource"]["resourceType"] == "Observation")
    observation["resource"]["status"] = "finished"
    return orjson.dumps(bundle)


def test_400_is_a_dead_letter_the_rest_goes_on_the_fix_delivers_it(
    fhir: FhirServer, tmp_path: Path
) -> None:
    # DOCS[3] and DOCS[4] are two reports of one patient: the first is made invalid.
    assert patient_key(orjson.loads(DOCS[3])) == patient_key(orjson.loads(DOCS[4]))
    broken = [*DOCS[:3], invalid(DOCS[3]), *DOCS[4:8]]
    outbox = SqliteOutbox.open(tmp_path / "outbox.sqlite", dead_letters=tmp_path / "dead")
    outbox.enqueue(documents(broken), time.time())

    summary = deliver(outbox, fhir.base)
    assert (summary.delivered, summary.dead) == (6, 1)
    (letter,) = outbox.dead_letters()
    assert (letter.key, letter.status) == ("doc003", 400)
    outcome = orjson.loads(letter.outcome or b"{}")
    assert outcome["resourceType"] == "OperationOutcome"
    assert "finished" in orjson.dumps(outcome).decode()
    name = dead_letter_name("doc003")
    assert (tmp_path / "dead" / f"{name}.bundle.json").read_bytes() == broken[3]
    assert orjson.loads((tmp_path / "dead" / f"{name}.outcome.json").read_bytes()) == outcome
    counts = outbox.counts(time.time())
    assert (counts.held, counts.pending) == (1, 1)  # doc004 waits behind doc003
    held = outbox.record("doc004")
    assert held is not None
    assert held.attempts == 0

    # The fix: the message processed again gives a valid document under the same key.
    fixed = Document("doc003", documents(broken)[3].patient, 3, DOCS[3])
    assert outbox.enqueue([fixed], time.time()) == 1
    assert not (tmp_path / "dead" / f"{name}.bundle.json").exists()
    summary = deliver(outbox, fhir.base)
    assert summary.delivered == 2  # doc003, then doc004
    assert outbox.counts(time.time()).pending == 0
    assert fhir.counts()["DiagnosticReport"] == 8


def test_retry_dead_after_the_server_was_fixed(fhir: FhirServer, tmp_path: Path) -> None:
    """A FHIR-input sample written for its source server (``--fhir-target source``) names
    ``Patient/<id>`` of that server: 400 here.  Once that Patient (and whatever else it
    names) exists on the server, ``retry_dead`` delivers the same bytes."""
    data = SOURCE[0]
    outbox = SqliteOutbox.open(tmp_path / "outbox.sqlite", dead_letters=tmp_path / "dead")
    outbox.enqueue(documents([data]), time.time())
    assert deliver(outbox, fhir.base).dead == 1
    (letter,) = outbox.dead_letters()
    text = (letter.outcome or b"").decode()
    missing = text.split("Reference ")[1].split(" does not resolve")[0]  # e.g. Patient/x
    kind, ident = missing.split("/")
    assert kind == "Patient"

    assert deliver(outbox, fhir.base).attempts == 0  # dead stays dead until asked
    assert fhir.counts() == {}  # the refused transaction applied nothing
    httpx.put(f"{fhir.base}/{missing}", json={"resourceType": kind, "id": ident}).raise_for_status()
    others = _other_missing(fhir, data)
    for needed in others:
        httpx.put(f"{fhir.base}/{needed}", json=_minimal(needed)).raise_for_status()
    assert outbox.retry_dead() == 1
    assert not list((tmp_path / "dead").iterdir())
    summary = deliver(outbox, fhir.base)
    assert summary.delivered == 1
    record = outbox.record("doc000")
    assert record is not None
    assert record.state == "delivered"
    wanted = Counter(e["resource"]["resourceType"] for e in orjson.loads(data)["entry"])
    wanted.update(["Patient", *(needed.split("/")[0] for needed in others)])
    assert fhir.counts() == dict(wanted)  # the document's resources, each once


def _other_missing(fhir: FhirServer, data: bytes) -> list[str]:
    """Every other literal reference of the Bundle that the server lacks."""
    found = sorted(set(re.findall(rb'"reference":"((?!urn:)[A-Z][A-Za-z]+/[^"]+)"', data)))
    return [
        ref.decode()
        for ref in found
        if not ref.startswith(b"Patient/")
        and httpx.get(f"{fhir.base}/{ref.decode()}").status_code == 404
    ]


def _minimal(reference: str) -> dict[str, object]:
    kind, ident = reference.split("/")
    resource: dict[str, object] = {"resourceType": kind, "id": ident}
    if kind == "Observation":
        resource.update(status="final", code={"text": "x"})
    if kind == "DiagnosticReport":
        resource.update(status="final", code={"text": "x"})
    return resource

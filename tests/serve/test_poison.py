"""A poison message against the real ``leukofhir serve`` (a subprocess on loopback): one
body whose processing raises must be answered, must not block the next messages, SIGTERM
or the next start, and is listed by ``leukofhir journal OUT --failed``.

Two poisons: the FHIR body of issue 9 (an Observation with ``contained: [{"resourceType":
"Foo"}]``; the core raised KeyError on it; once the core rejects it instead, the same test
still holds: it is answered, with 422 then), and a fault injected into the service's
processing step (``sitecustomize`` on the subprocess's path) that raises whatever the core
does, for the recovery of a poison row left by a crash.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import httpx

from leukofhir.serve.header import content_hash, read_header
from leukofhir.serve.journal import Arrival, Journal
from tests.serve.helpers import (
    TIMEOUT,
    Service,
    environment,
    field_of,
    mllp_exchange,
    sample,
    service,
)

FHIR = {"content-type": "application/fhir+json"}
ER7 = {"content-type": "x-application/hl7-v2+er7"}
POISON = json.dumps(
    {
        "resourceType": "Observation",
        "id": "wbc",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "6690-2"}]},
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": "2026-01-05T08:00:00Z",
        "valueQuantity": {
            "value": 3.1,
            "unit": "10*3/uL",
            "system": "http://unitsofmeasure.org",
            "code": "10*3/uL",
        },
        "contained": [{"resourceType": "Foo"}],
    }
).encode()
M02 = sample("02-leukopenia-g1-wbc-3p0.hl7")
M03 = sample("03-leukopenia-g2-wbc-2p99.hl7")
MARKER = b"INJECTED-FAULT"
INJECTION = f"""
from leukofhir.serve import work

_run_one = work.Processor.run_one


def run_one(self, job, *args, **kwargs):
    if {MARKER!r} in job.data:
        raise KeyError("R4.FooType")
    return _run_one(self, job, *args, **kwargs)


work.Processor.run_one = run_one
"""


def msa(ack: bytes) -> tuple[str, str]:
    return field_of(ack, "MSA", 1), field_of(ack, "MSA", 2)


def stop_within_10_s(running: Service) -> float:
    started = time.monotonic()
    running.stop()  # SIGTERM: exit 0, no traceback, within 10 s
    return time.monotonic() - started


def test_the_poisoned_fhir_body_is_answered_others_go_on_sigterm_and_restart(
    tmp_path: Path,
) -> None:
    """The issue's reproduction, with the default shutdown timeout (30 s): before the guard
    the POST never got an answer, nor did its retry, and SIGTERM took about 36 s."""
    with service(tmp_path, options=()) as running:
        with httpx.Client(base_url=f"http://127.0.0.1:{running.http}", timeout=TIMEOUT) as http:
            first = http.post("/fhir", content=POISON, headers=FHIR)
            again = http.post("/fhir", content=POISON, headers=FHIR)
            good = http.post("/hl7v2", content=M02, headers=ER7)
        assert first.status_code in (422, 500), first.text  # 500 while the core raises
        assert first.json()["resourceType"] == "OperationOutcome"
        assert (again.status_code, again.content) == (first.status_code, first.content)
        assert msa(good.content) == ("AA", field_of(M02, "MSH", 10))
        assert msa(mllp_exchange(running.mllp, M03)) == ("AA", field_of(M03, "MSH", 10))
        assert stop_within_10_s(running) < 10
    journal = Journal(running.out)
    counts = journal.counts()
    journal.close()
    assert counts["received"] == 0
    assert counts["processed"] == 2
    with service(tmp_path, options=()) as restarted:  # starts: nothing poisonous left
        with httpx.Client(base_url=f"http://127.0.0.1:{restarted.http}", timeout=TIMEOUT) as http:
            assert http.get("/healthz").json()["status"] == "ok"
            resent = http.post("/fhir", content=POISON, headers=FHIR)
        assert (resent.status_code, resent.content) == (first.status_code, first.content)
        assert msa(mllp_exchange(restarted.mllp, M02))[0] == "AA"  # the stored ACK
        assert stop_within_10_s(restarted) < 10


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", ""])
    process.wait()
    return process.pid


def leukofhir_journal(out: Path, *options: str, env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "leukofhir.cli", "journal", str(out), *options],
        capture_output=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert b"Traceback" not in done.stderr
    return done.stdout.decode()


def test_a_journal_holding_a_poison_row_left_by_a_crash_starts_healthy(tmp_path: Path) -> None:
    """A service process died with two poison messages received but not finished: the
    next start marks them failed (or, for the FHIR body once the core rejects it, done),
    answers, and ``journal --failed`` lists the failed one without patient data; after
    ``journal --retry`` (the fault fixed) the next start processes it."""
    inject = tmp_path / "inject"
    inject.mkdir()
    (inject / "sitecustomize.py").write_text(INJECTION)
    injected = environment([inject])
    poison = M02.replace(field_of(M02, "MSH", 10).encode(), MARKER + b"-1")
    out = tmp_path / "out"
    journal = Journal(out)
    header = read_header(poison)
    sha256 = content_hash(poison)
    journal.receive(
        [
            Arrival(header.sender, header.control_id, sha256, "hl7v2", "mllp", poison),
            Arrival("", "", content_hash(POISON), "fhir", "http", POISON),
        ],
        "2026-01-05T08:00:00+00:00",
        owner=dead_pid(),
    )
    journal.close()

    with service(tmp_path, env=injected) as running:
        listed = leukofhir_journal(out, "--failed", "--format", "ndjson", env=injected)
        rows = [json.loads(line) for line in listed.splitlines()]
        stored_ar = mllp_exchange(running.mllp, poison)
        assert msa(mllp_exchange(running.mllp, M03))[0] == "AA"
        assert stop_within_10_s(running) < 10
    log = running.log.read_text()
    assert '"event":"processing_failed"' in log
    injected_row = next(r for r in rows if r["control_id"] == header.control_id)
    assert set(injected_row) == {"id", "received", "sender", "control_id", "format", "reason"}
    assert injected_row["reason"].startswith("KeyError at ")
    assert injected_row["format"] == "hl7v2"
    assert injected_row["received"] == "2026-01-05T08:00:00+00:00"
    for value in ("003318742", "HOLLOWAY", "GERALD", "19570822", "MAPLE", "A0441879"):
        assert value not in listed
        assert value not in log
    assert msa(stored_ar) == ("AR", header.control_id)  # a re-send gets the stored answer
    assert "207" in field_of(stored_ar, "ERR", 3)

    plain = environment()  # the fault fixed
    assert "put back" in leukofhir_journal(out, "--retry", str(injected_row["id"]), env=plain)
    with service(tmp_path) as restarted:
        assert msa(mllp_exchange(restarted.mllp, poison)) == ("AA", header.control_id)
        listed = leukofhir_journal(out, "--failed", "--format", "ndjson", env=plain)
        assert header.control_id not in listed
        assert stop_within_10_s(restarted) < 10

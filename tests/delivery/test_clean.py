"""Delivery to a real FHIR server without faults: what it holds equals the plain route;
documents the server refuses become dead letters and the rest goes on; a second run sends
nothing; server limits are met by splitting."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from leukofhir.delivery import PROFILES, DeliveryStats, SqliteOutbox
from leukofhir.delivery.split import plan_parts, read_bundle
from tests.delivery.helpers import DOCS, SOURCE, deliver, documents, fresh_outbox
from tests.fhirserver import FhirServer, canonical, running_server


def test_clean_delivery_equals_the_plain_route(
    fhir: FhirServer, clean_state: list[str], tmp_path: Path
) -> None:
    outbox = fresh_outbox(tmp_path, DOCS + SOURCE)
    stats = DeliveryStats()
    summary = deliver(outbox, fhir.base, stats=stats)

    assert canonical(fhir.dump()) == clean_state
    counts = outbox.counts(time.time())
    assert counts.delivered == len(DOCS)
    # The Bundles written for a source server (--fhir-target source) name its resources
    # (Patient/lakeside-p1001), which this empty server does not have: 400, a dead letter
    # each, the first of every patient; that patient's later ones held behind it.
    heads = {d.patient for d in documents(DOCS + SOURCE) if d.data in SOURCE}
    assert counts.dead == len(heads) < len(SOURCE)
    assert counts.held == len(SOURCE) - len(heads)
    assert counts.pending == counts.held
    assert summary.stopped is None
    assert summary.retried == 0
    for letter in outbox.dead_letters():
        assert letter.status == 400
        assert letter.outcome is not None
        assert "does not resolve" in letter.outcome.decode()
    dead = sorted(p.name for p in (tmp_path / "dead").iterdir())
    assert len(dead) == 2 * counts.dead
    snapshot = stats.snapshot()
    assert snapshot.requests == sum(snapshot.latency_buckets) == summary.attempts
    assert snapshot.by_status == {"200": len(DOCS), "400": counts.dead}

    again = deliver(outbox, fhir.base)  # a resume with nothing left: no request at all
    assert again.attempts == 0


def test_delivering_twice_changes_nothing(
    fhir: FhirServer, clean_state: list[str], tmp_path: Path
) -> None:
    """Every write is conditional (the Provenance on a tag naming its document): a second
    delivery of the same documents, from another outbox, adds no resource and changes no
    content, the Provenance included."""
    deliver(fresh_outbox(tmp_path / "a"), fhir.base)
    once = fhir.counts()
    assert canonical(fhir.dump()) == clean_state
    summary = deliver(fresh_outbox(tmp_path / "b"), fhir.base)
    assert summary.delivered == len(DOCS)
    assert canonical(fhir.dump()) == clean_state
    assert fhir.counts() == once
    assert once["Provenance"] == len(DOCS)


@pytest.fixture(scope="module")
def medplum_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FhirServer]:
    with running_server(tmp_path_factory.mktemp("fhir-medplum"), "--medplum-limits") as server:
        yield server


def big(data: bytes) -> bool:
    return len(read_bundle(data)["entry"]) > 8


def test_medplum_limits_refuse_large_conditional_transactions(
    medplum_server: FhirServer, tmp_path: Path
) -> None:
    medplum_server.reset()
    outbox = fresh_outbox(tmp_path)
    deliver(outbox, medplum_server.base, profile=PROFILES["default"])
    refused = [d for d in documents(DOCS) if big(d.data)]
    assert refused  # today's Bundles hold 16-22 conditional entries
    first = {d.patient: d.key for d in reversed(refused)}  # the rest are held behind it
    letters = outbox.dead_letters()
    assert sorted(letter.key for letter in letters) == sorted(first.values())
    assert outbox.counts(time.time()).held == len(refused) - len(first) == 1
    assert all(letter.status == 400 for letter in letters)
    assert all(b"too many entries" in (letter.outcome or b"") for letter in letters)


def test_medplum_profile_splits_and_delivers_the_same(
    medplum_server: FhirServer, clean_state: list[str], tmp_path: Path
) -> None:
    medplum_server.reset()
    outbox = fresh_outbox(tmp_path)
    stats = DeliveryStats()
    summary = deliver(outbox, medplum_server.base, profile=PROFILES["medplum"], stats=stats)
    assert summary.delivered == len(DOCS)
    assert summary.dead == 0
    assert stats.snapshot().requests > 2 * len(DOCS)  # in parts
    assert canonical(medplum_server.dump()) == clean_state


class Recording(httpx.AsyncBaseTransport):
    """The real transport, keeping every request body; ``after_first`` runs once the
    first answer is in."""

    def __init__(self, after_first: Callable[[bytes], None] | None = None) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.bodies: list[bytes] = []
        self.after_first = after_first

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.bodies.append(request.content)
        response = await self.inner.handle_async_request(request)
        if len(self.bodies) == 1 and self.after_first is not None:
            self.after_first(await response.aread())
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


def test_split_goes_on_after_the_part_that_failed(
    medplum_server: FhirServer, tmp_path: Path
) -> None:
    """A part refused for good (here: the server lost the Patient an earlier part made)
    leaves the earlier parts applied and their locations kept; after the fix the document
    goes on from that part, with the kept locations, without sending part 1 again."""
    medplum_server.reset()
    data = DOCS[0]
    outbox = SqliteOutbox.open(tmp_path / "outbox.sqlite", dead_letters=tmp_path / "dead")
    outbox.enqueue(documents([data]), time.time())
    lost: list[str] = []

    def lose_the_patient(answer: bytes) -> None:
        lost.append(orjson.loads(answer)["entry"][0]["response"]["location"])
        httpx.delete(f"{medplum_server.base}/{lost[0]}").raise_for_status()

    first = Recording(lose_the_patient)
    deliver(outbox, medplum_server.base, profile=PROFILES["medplum"], transport=first)
    (letter,) = outbox.dead_letters()
    assert letter.status == 400
    assert len(first.bodies) == 2
    assert lost[0].encode() in first.bodies[1]  # part 2 names part 1's Patient by its id

    patient = orjson.loads(first.bodies[0])["entry"][0]["resource"]
    put = httpx.put(f"{medplum_server.base}/{lost[0]}", json={**patient, "id": lost[0][8:]})
    put.raise_for_status()  # the fix: the Patient is back under its id
    assert outbox.retry_dead() == 1
    second = Recording()
    summary = deliver(outbox, medplum_server.base, profile=PROFILES["medplum"], transport=second)
    assert summary.delivered == 1
    assert second.bodies[0] == first.bodies[1]  # went on from part 2, same bytes
    parts = plan_parts(read_bundle(data), PROFILES["medplum"])
    assert len(first.bodies) - 1 + len(second.bodies) == len(parts) >= 2
    wanted = Counter(e["resource"]["resourceType"] for e in read_bundle(data)["entry"])
    assert medplum_server.counts() == dict(wanted)

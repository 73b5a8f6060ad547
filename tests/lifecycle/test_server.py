"""The lifecycle against a real FHIR server (../shared/tools/fhir-server: Medplum's router,
validation and referential integrity on): every sample output loads into an empty server
and a second delivery adds and changes nothing; per-patient sequences delivered in order,
shuffled with re-sends, and twice, leave the same live Flags and results."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import httpx

from leukofhir.emit.jsonio import dumps
from leukofhir.lifecycle.settle import settle_message
from leukofhir.lifecycle.store import MemoryStore
from leukofhir.pipeline import process
from tests.conftest import SAMPLES, make_context
from tests.fhirserver import FhirServer, canonical, running_server
from tests.lifecycle.sequences import Version, hl7

CONTEXT = make_context()


def bundles(messages: list[bytes]) -> list[bytes]:
    """The Bundles of ``messages`` settled in that order against one state."""
    store, out = MemoryStore(), []
    for data in messages:
        for outcome in process(data, CONTEXT):
            settled, states = settle_message(outcome, store.load, CONTEXT.rule_set)
            store.save(states)
            out.extend(dumps(d) for d in settled.documents() if d["resourceType"] == "Bundle")
    return out


def deliver(server: FhirServer, documents: list[bytes]) -> None:
    with httpx.Client(timeout=60) as client:
        for document in documents:
            answer = client.post(
                server.base, content=document, headers={"Content-Type": "application/fhir+json"}
            )
            assert answer.status_code == 200, answer.text[:2000]
            statuses = [e["response"]["status"] for e in answer.json()["entry"]]
            assert all(s.startswith("2") for s in statuses), statuses


def live(resources: list[dict[str, Any]]) -> list[str]:
    """Flags and Observations that stand (not entered-in-error), canonical."""
    return [
        text
        for text in canonical(resources)
        if (item := json.loads(text))["resourceType"] in {"Flag", "Observation"}
        and item["status"] != "entered-in-error"
    ]


def test_every_sample_loads_into_an_empty_server_and_twice_adds_nothing(tmp_path: Path) -> None:
    files = sorted(p for p in SAMPLES.iterdir() if p.suffix in {".hl7", ".json", ".ndjson"})
    documents = bundles([p.read_bytes() for p in files])  # one run over every sample
    assert len(documents) > 70
    with running_server(tmp_path) as server:
        deliver(server, documents)  # every entry 2xx: no reference the server lacks
        first, counts = canonical(server.dump()), server.counts()
        deliver(server, documents)
        assert server.counts() == counts
        assert canonical(server.dump()) == first


def sequence(patient: str, rng: random.Random) -> list[bytes]:
    """A patient's daily CBCs falling and recovering, some preliminary then final, one
    corrected; in the order the lab sent them."""
    wbc = ["6.1", "3.8", "2.4", "1.6", "2.2", "3.5", "4.9", "5.6", "6.0"]
    anc = ["3.2", "1.3", "0.7", "0.3", "0.6", "1.2", "1.8", "2.6", "3.1"]
    versions = []
    for day, (w, a) in enumerate(zip(wbc, anc, strict=True)):
        if rng.random() < 0.4:
            versions.append(Version(day, "P", w, a, sent_hours=1))
        versions.append(Version(day, "F", w, a, sent_hours=3))
        if rng.random() < 0.2:
            versions.append(Version(day, "C", wbc[(day + 4) % 9], a, sent_hours=6))
    return [hl7(patient, v) for v in versions]


def test_any_order_and_redelivery_leave_the_state_of_the_in_order_fold(tmp_path: Path) -> None:
    rng = random.Random(20261203)
    messages = [m for patient in ("P1", "P2", "P3") for m in sequence(patient, rng)]
    with running_server(tmp_path) as server:
        deliver(server, bundles(messages))
        expected = live(server.dump())
        assert any('"inactive"' in text for text in expected)  # the episodes resolved
        for seed in (1, 2):
            server.reset()
            shuffled = messages + random.Random(seed).sample(messages, 6)  # re-sends
            random.Random(seed).shuffle(shuffled)
            documents = bundles(shuffled)
            deliver(server, documents)
            assert live(server.dump()) == expected
            counts = server.counts()
            deliver(server, documents)  # the same documents again
            assert server.counts() == counts
            assert live(server.dump()) == expected

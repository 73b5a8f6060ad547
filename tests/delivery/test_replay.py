"""``replay --fhir-base``: each Bundle delivered before the next message is read, one log
line per document with the server's answer; stdout keeps the documents."""

from __future__ import annotations

import json

from tests.conftest import SAMPLES
from tests.delivery.wiring import NOW, attempts, leukofhir, plain_state, run
from tests.fhirserver import FhirServer, canonical


def test_replay_delivers_each_bundle_and_says_so(fhir: FhirServer) -> None:
    paths = [str(SAMPLES / name) for name in ("36-chemotherapy-course-neutropenia.hl7",)]
    done = run(leukofhir("replay", *paths, "--now", NOW, "--fhir-base", fhir.base))
    assert done.returncode == 0, done.stderr[-2000:]
    documents = [line.encode() for line in done.stdout.splitlines()]
    bundles = [d for d in documents if json.loads(d)["resourceType"] == "Bundle"]
    lines = attempts(done.stderr)
    assert [line["verdict"] for line in lines] == ["delivered"] * len(bundles) == ["delivered"] * 11
    assert [line["key"] for line in lines][:2] == [
        "36-chemotherapy-course-neutropenia.hl7.m0001.r1",
        "36-chemotherapy-course-neutropenia.hl7.m0002.r1",
    ]
    state = canonical(fhir.dump())
    assert state == plain_state(fhir, bundles)


def test_replay_holds_a_patient_behind_its_dead_letter(fhir: FhirServer) -> None:
    """Written for the source server, f01 names resources this server lacks: 400; f05 is
    the same patient's next report: held, not sent; exit 1."""
    names = (
        "f01-single-observation-wbc-leukopenic.json",
        "f05-report-contained-results-lymphopenia.json",
    )
    paths = [str(SAMPLES / name) for name in names]
    done = run(leukofhir("replay", *paths, "--fhir-target", "source", "--fhir-base", fhir.base))
    assert done.returncode == 1
    assert [(line["verdict"], line.get("status")) for line in attempts(done.stderr)] == [
        ("dead", 400),
        ("held", None),
    ]
    assert fhir.counts() == {}
    closing = [json.loads(line) for line in done.stderr.splitlines() if "replay delivery" in line]
    assert closing[0]["dead"] == closing[0]["held"] == 1

"""Golden outputs for every sample message, checked against the FHIR models and the
hand-computed expectations in tests/sample_expectations.json.

Regenerate the golden files after an intended change with ``UPDATE_GOLDEN=1 pytest``
and read the diff before committing it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.operationoutcome import OperationOutcome

from leukofhir.context import Context
from leukofhir.emit.jsonio import dumps
from leukofhir.lifecycle.settle import settle_message
from leukofhir.lifecycle.store import MemoryStore
from leukofhir.pipeline import process
from tests.conftest import GOLDEN, ROOT, SAMPLES, settled

SAMPLE_FILES = sorted(p for p in SAMPLES.iterdir() if p.suffix in {".hl7", ".json", ".ndjson"})
EXPECTED = {
    item["file"]: item
    for item in json.loads(
        (ROOT / "tests" / "sample_expectations.json").read_text(encoding="utf-8")
    )
}


def render(path: Path, context: Context) -> bytes:
    """The file replayed alone: its messages settled in order against a fresh state."""
    lines = [
        dumps(doc)
        for outcome in settled([path.read_bytes()], context)
        for doc in outcome.documents()
    ]
    return b"\n".join(lines) + b"\n"


@pytest.mark.parametrize("path", SAMPLE_FILES, ids=lambda p: p.name)
def test_golden_output(path: Path, context: Context) -> None:
    golden = GOLDEN / f"{path.name}.ndjson"
    actual = render(path, context)
    if os.environ.get("UPDATE_GOLDEN"):
        GOLDEN.mkdir(exist_ok=True)
        golden.write_bytes(actual)
    assert golden.exists(), f"no golden file for {path.name}: run UPDATE_GOLDEN=1 pytest"
    assert actual == golden.read_bytes()


@pytest.mark.parametrize("path", SAMPLE_FILES, ids=lambda p: p.name)
def test_output_is_deterministic_and_valid(path: Path, context: Context) -> None:
    first = render(path, context)
    assert render(path, context) == first
    for line in first.splitlines():
        document = json.loads(line)
        model = Bundle if document["resourceType"] == "Bundle" else OperationOutcome
        model.model_validate(document)


@pytest.mark.parametrize("path", SAMPLE_FILES, ids=lambda p: p.name)
def test_findings_match_the_hand_computed_expectations(path: Path, context: Context) -> None:
    expected = EXPECTED[path.name]
    outcomes = list(process(path.read_bytes(), context))
    assert [o.disposition.value for o in outcomes] == [m["outcome"] for m in expected["messages"]]
    for outcome, message in zip(outcomes, expected["messages"], strict=True):
        assert len(outcome.reports) == len(message.get("reports", []))
        for report, want in zip(outcome.reports, message.get("reports", []), strict=True):
            got = sorted((f.rule_id, f.grade, f.priority) for f in report.evaluation.findings)
            assert got == sorted(
                (f["rule_id"], f.get("grade"), f["priority"]) for f in want["findings"]
            )
            not_evaluated = {n.rule_id for n in report.evaluation.not_evaluated}
            assert set(want.get("not_evaluated", [])) <= not_evaluated


@pytest.mark.parametrize("path", SAMPLE_FILES, ids=lambda p: p.name)
def test_settled_outcomes_match_the_hand_computed_expectations(
    path: Path, context: Context
) -> None:
    """The file's messages settled in order against one state (as the golden render does):
    each message's disposition is ``settled_outcome`` when the lifecycle changes it (a
    superseded version writes nothing: skipped), else ``outcome``; a superseded version
    says which version was already applied."""
    expected = EXPECTED[path.name]
    store = MemoryStore()
    for outcome, message in zip(
        process(path.read_bytes(), context), expected["messages"], strict=True
    ):
        settled, states = settle_message(outcome, store.load, context.rule_set)
        store.save(states)
        assert settled.disposition.value == message.get("settled_outcome", message["outcome"])
        superseded = [i.message for i in settled.issues if "superseded" in i.message]
        if "superseded_by" in message:
            assert settled.settled is not None
            assert all(bundle is None for bundle in settled.settled)
            assert len(superseded) == len(outcome.reports)
            assert all(f"MSH-10 {message['superseded_by']}" in text for text in superseded)
        else:
            assert not superseded

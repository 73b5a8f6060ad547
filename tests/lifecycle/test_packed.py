"""A draft packed to travel between processes (batch workers → the parent) finishes into
exactly the bytes the unpacked draft gives."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from leukofhir.emit.bundle import finish, finish_bytes
from leukofhir.emit.jsonio import dumps
from leukofhir.lifecycle.settle import settle_drafts
from leukofhir.lifecycle.store import MemoryStore
from leukofhir.pipeline import process
from tests.conftest import SAMPLES, make_context

CONTEXT = make_context()
FILES = sorted(p for p in SAMPLES.iterdir() if p.suffix in {".hl7", ".json", ".ndjson"})


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_packed_drafts_finish_into_the_same_bytes(path: Path) -> None:
    store = MemoryStore()
    for outcome in process(path.read_bytes(), CONTEXT):
        drafts = [report.draft for report in outcome.reports]
        writes, _, states = settle_drafts(drafts, store.load, CONTEXT.rule_set)
        store.save(states)
        for draft, written in zip(drafts, writes, strict=True):
            bundle = finish(draft, written, CONTEXT.rule_set)
            travelled = pickle.loads(pickle.dumps(draft.pack()))
            packed = finish_bytes(travelled, written, CONTEXT.rule_set)
            assert packed == (None if bundle is None else dumps(bundle))
            assert finish_bytes(draft, written, CONTEXT.rule_set) == packed

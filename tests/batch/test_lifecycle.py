"""The lifecycle in a batch: the parent settles messages in input order against the states
in its ledger, so that the Bundles are those of a replay of the same files in that order,
whatever the number of workers."""

from __future__ import annotations

import json
import os
import sqlite3
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from leukofhir.batch import BatchOptions, run_batch
from leukofhir.emit.jsonio import dumps
from leukofhir.ingest.framing import split_messages
from leukofhir.logs import get_logger
from tests.batch.helpers import OLD, make_inputs
from tests.conftest import NOW, SAMPLES, make_context, settled

LOG = get_logger("test.batch")
SEQUENCES = (
    "36-chemotherapy-course-neutropenia.hl7",
    "37-correction-removes-finding.hl7",
    "38-preliminary-after-final.hl7",
)


def _inputs(folder: Path) -> list[bytes]:
    """The sequences' messages, one per file, in order; and daily CBCs of 12 patients."""
    folder.mkdir(parents=True)
    messages = [
        raw.data for name in SEQUENCES for raw in split_messages((SAMPLES / name).read_bytes())
    ]
    for n, data in enumerate(messages):
        path = folder / f"seq-{n:03d}.hl7"
        path.write_bytes(data)
        os.utime(path, (OLD + n, OLD + n))
    make_inputs(folder / "daily", 240, per_file=4, seed=5, patients=12)
    return messages


def _bundles(out: Path) -> list[bytes]:
    return sorted(p.read_bytes() for p in (out / "processed").rglob("*.bundle.json"))


def _replayed(folder: Path) -> list[bytes]:
    """The Bundles ``replay`` gives for the same files, in the batch's order."""
    files = sorted(folder.glob("*.hl7")) + sorted((folder / "daily").glob("*.hl7"))
    return sorted(
        dumps(doc) + b"\n"
        for outcome in settled((path.read_bytes() for path in files), make_context())
        for doc in outcome.documents()
        if doc["resourceType"] == "Bundle"
    )


def _options(tmp_path: Path, **changes: Any) -> BatchOptions:
    options = BatchOptions(
        source=tmp_path / "in", out=tmp_path / "out", workers=1, min_age=0, now=NOW, progress=False
    )
    return replace(options, **changes)


@pytest.mark.parametrize("workers", [1, 2])
def test_a_batch_settles_like_a_replay_in_input_order(tmp_path: Path, workers: int) -> None:
    _inputs(tmp_path / "in")
    result = run_batch(_options(tmp_path, workers=workers, files_per_task=3), LOG)
    assert result.exit_code == 0
    assert _bundles(tmp_path / "out") == _replayed(tmp_path / "in")
    # the late preliminary of sample 38: skipped, with the newer version named
    with sqlite3.connect(tmp_path / "out" / "ledger.sqlite") as db:
        (reason,) = db.execute(
            "SELECT reason FROM messages WHERE control_id = 'HL25022608551901518'"
        ).fetchone() or ("",)
        patients = db.execute("SELECT COUNT(*) FROM lifecycle_state").fetchone()[0]
    assert "superseded" in reason
    assert patients == 3 + 12
    again = run_batch(_options(tmp_path, workers=workers), LOG)
    assert again.summary["this_run"]["messages"] == {}


def test_the_standing_flags_of_a_course_end_resolved(tmp_path: Path) -> None:
    _inputs(tmp_path / "in")
    run_batch(_options(tmp_path), LOG)
    flags: dict[str, dict[str, Any]] = {}
    with sqlite3.connect(tmp_path / "out" / "ledger.sqlite") as db:
        written = [
            json.loads(o) for (o,) in db.execute("SELECT outputs FROM messages ORDER BY rowid")
        ]
    for name in (n for outputs in written for n in outputs if n.endswith(".bundle.json")):
        for entry in json.loads((tmp_path / "out" / name).read_bytes())["entry"]:
            resource = entry["resource"]
            if resource["resourceType"] == "Flag":  # in the order written: the latest wins
                flags[resource["identifier"][0]["value"]] = resource
    neutropenia = [f for f in flags.values() if f["code"]["coding"][0]["code"] == "165517008"]
    course = [f for f in neutropenia if f["period"]["start"] == "2025-01-25T05:40:00-05:00"]
    assert [f["status"] for f in course] == ["inactive"]
    assert course[0]["period"]["end"].startswith("2025-02-03")


def test_the_ledger_writes_settled_states_when_it_commits(tmp_path: Path) -> None:
    """States saved in a transaction are read back from memory until it commits, written
    with it, and dropped with a rollback, as the rows are."""
    from leukofhir.batch.ledger import Ledger
    from leukofhir.lifecycle.state import PatientState
    from tests.lifecycle.test_store import some_state

    def table(patients: int) -> None:  # what another connection sees
        with sqlite3.connect(tmp_path / "ledger.sqlite") as other:
            count = other.execute("SELECT COUNT(*) FROM lifecycle_state").fetchone()[0]
        assert count == patients

    ledger = Ledger(tmp_path)
    ledger.save_states({"a": some_state(1)})
    ledger.save_states({"a": some_state(2)})
    assert ledger.load_state("a") == some_state(2)
    table(0)
    ledger.rollback()
    assert ledger.load_state("a") == PatientState()
    ledger.save_states({"a": some_state(1), "b": some_state(3)})
    assert ledger.state_size()[0] == 2  # the transaction's states counted
    ledger.flush()
    table(2)
    ledger.close()
    again = Ledger(tmp_path)
    assert again.load_state("a") == some_state(1)
    assert again.load_state("b") == some_state(3)
    again.close()

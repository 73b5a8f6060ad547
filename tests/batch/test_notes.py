"""Information-only issues of a processed message: in the ledger and the summary, not a
file; any other issue keeps the OperationOutcome file, with every issue in it."""

from __future__ import annotations

import json
import shutil
import sqlite3
from dataclasses import replace
from pathlib import Path
from typing import Any

from leukofhir.batch import BatchOptions, run_batch
from leukofhir.batch.ledger import Ledger
from leukofhir.batch.summary import render_summary
from leukofhir.context import Context
from leukofhir.errors import Severity
from leukofhir.logs import get_logger
from leukofhir.pipeline import process
from leukofhir.rules import load_rule_set
from leukofhir.terminology import load_terminology
from tests.batch.helpers import age, make_inputs
from tests.conftest import NOW, ROOT

LOG = get_logger("test.batch")
SAMPLES = ROOT / "sample_messages"


def _options(tmp_path: Path, **changes: Any) -> BatchOptions:
    options = BatchOptions(
        source=tmp_path / "in", out=tmp_path / "out", workers=1, min_age=0, now=NOW, progress=False
    )
    return replace(options, **changes)


def _rows(out: Path) -> dict[str, tuple[str, list[str], list[str]]]:
    db = sqlite3.connect(out / "ledger.sqlite")
    try:
        return {
            str(source): (str(outcome), json.loads(outputs), json.loads(notes))
            for source, outcome, outputs, notes in db.execute(
                "SELECT source, outcome, outputs, notes FROM messages"
            )
        }
    finally:
        db.close()


def _with_chemistry(message: bytes, lines: int) -> bytes:
    """``message`` with ``lines`` more OBX that are no CBC field (a long note)."""
    extra = b"".join(
        b"OBX|%d|NM|2345-7^Glucose^LN||5.%d|mmol/L|3.9-5.6||||F\r" % (100 + n, n % 10)
        for n in range(lines)
    )
    return message + extra


def test_notes_go_to_the_ledger_warnings_keep_their_file(tmp_path: Path) -> None:
    source = tmp_path / "in"
    make_inputs(source, 1)  # generated: "OBX[2] … are no CBC field …; not used" only
    long = source / "long.hl7"
    long.write_bytes(_with_chemistry((source / "gen-7-000000.hl7").read_bytes(), 60))
    age(long, 5)
    for n, name in enumerate(
        ("21-unknown-wbc-unit.hl7", "17-chemistry-no-cbc.hl7", "18-malformed-msh.hl7")
    ):
        shutil.copy(SAMPLES / name, source / name)
        age(source / name, 10 + n)
    result = run_batch(_options(tmp_path), LOG)
    out = tmp_path / "out"
    rows = _rows(out)

    outcome, outputs, notes = rows["gen-7-000000.hl7"]
    assert outcome == "processed"
    assert [Path(o).name.split(".", 1)[1] for o in outputs] == ["r1.bundle.json"]
    assert notes
    assert all("not used" in note for note in notes)
    assert not list(out.glob("processed/*/gen*.outcome.json"))

    context = Context(
        now=NOW, terminology=load_terminology(), rule_set=load_rule_set(), default_timezone="UTC"
    )
    (whole,) = process(long.read_bytes(), context)
    expected_notes = [f"{i.location}: {i.message}" for i in whole.issues]
    assert max(len(note) for note in expected_notes) > 400  # kept whole, never cut
    assert rows["long.hl7"] == (
        "processed",
        [o for o in rows["long.hl7"][1] if o.endswith(".bundle.json")],
        expected_notes,
    )

    outcome, outputs, notes = rows["21-unknown-wbc-unit.hl7"]
    assert outcome == "processed"
    assert notes == []
    assert outputs[-1].endswith(".outcome.json")
    written = json.loads((out / outputs[-1]).read_bytes())
    (expected,) = process((SAMPLES / "21-unknown-wbc-unit.hl7").read_bytes(), context)
    assert any(i.severity is Severity.WARNING for i in expected.issues)
    assert written == json.loads(json.dumps(expected.operation_outcome()))  # every issue

    for name, kind in (
        ("17-chemistry-no-cbc.hl7", "skipped"),
        ("18-malformed-msh.hl7", "rejected"),
    ):
        outcome, outputs, notes = rows[name]
        assert outcome == kind
        assert notes == []
        assert any(o.endswith(".outcome.json") for o in outputs)
        assert all((out / o).is_file() for o in outputs)

    noted = result.summary["notes"]
    assert noted["messages"] == 2
    assert noted["issues"] == len(rows["gen-7-000000.hl7"][2]) + len(expected_notes)
    assert "notes: 2 processed messages" in render_summary(result.summary)


def test_a_version_1_ledger_is_migrated(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "ledger.sqlite")
    db.executescript(
        """
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        INSERT INTO meta VALUES ('schema_version', '1');
        CREATE TABLE messages (
            id INTEGER PRIMARY KEY, source TEXT NOT NULL, offset INTEGER NOT NULL,
            idx INTEGER NOT NULL, sha256 TEXT NOT NULL, control_id TEXT NOT NULL,
            outcome TEXT NOT NULL, reports INTEGER NOT NULL, findings TEXT NOT NULL,
            reason TEXT NOT NULL, outputs TEXT NOT NULL, recorded TEXT NOT NULL,
            UNIQUE (source, offset, sha256));
        INSERT INTO messages VALUES (1, 'a.hl7', 0, 0, 'x', 'C', 'processed', 1, '[]', '',
            '["processed/aa/C_1.r1.bundle.json", "processed/aa/C_1.outcome.json"]', 'now');
        """
    )
    db.close()
    ledger = Ledger(tmp_path)
    try:
        assert ledger.get_meta("schema_version") == "3"
        assert ledger.noted() == (0, 0)
        assert [row["notes"] for row in ledger.rows()] == ["[]"]
    finally:
        ledger.close()
    Ledger(tmp_path).close()  # idempotent

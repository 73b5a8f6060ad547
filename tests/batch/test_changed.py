"""A file that changed: messages that left it leave the ledger, the totals and OUT; the end
state equals a fresh run over the files as they are now."""

from __future__ import annotations

import shutil
import sqlite3
from dataclasses import replace
from pathlib import Path
from typing import Any

from leukofhir.batch import BatchOptions, run_batch
from leukofhir.batch.ledger import Ledger
from leukofhir.logs import get_logger
from tests.batch.helpers import age, generate_messages, ledger_rows, snapshot
from tests.conftest import NOW, ROOT

LOG = get_logger("test.batch")
SAMPLES = ROOT / "sample_messages"


def _options(tmp_path: Path, out: str = "out", **changes: Any) -> BatchOptions:
    options = BatchOptions(
        source=tmp_path / "in", out=tmp_path / out, workers=1, min_age=0, now=NOW, progress=False
    )
    return replace(options, **changes)


def test_messages_that_left_a_changed_file_leave_the_totals_and_out(tmp_path: Path) -> None:
    source = tmp_path / "in"
    source.mkdir()
    a, b, c, d = generate_messages(4, 3)
    bad = b"MSH|this is not a message\r"
    (source / "f.hl7").write_bytes(a + b + bad + c)
    age(source / "f.hl7")
    shutil.copy(SAMPLES / "f03-transaction-urn-uuid-neutropenia.json", source / "g.json")
    age(source / "g.json", 1)
    first = run_batch(_options(tmp_path), LOG)
    assert first.summary["messages"] == {"total": 5, "processed": 4, "skipped": 0, "rejected": 1}

    # b and the bad message leave, c stays (at another offset), d arrives; the FHIR file
    # is replaced by another report
    (source / "f.hl7").write_bytes(a + c + d)
    age(source / "f.hl7", 10)
    shutil.copy(SAMPLES / "f01-single-observation-wbc-leukopenic.json", source / "g.json")
    age(source / "g.json", 11)
    second = run_batch(_options(tmp_path), LOG)
    assert second.summary["messages"] == {"total": 4, "processed": 4, "skipped": 0, "rejected": 0}
    assert second.summary["this_run"]["files"] == {"changed": 2}
    assert second.exit_code == 0  # the rejected message is gone with the file's old content

    fresh = run_batch(_options(tmp_path, out="fresh"), LOG)
    assert fresh.summary["messages"] == second.summary["messages"]
    assert snapshot(tmp_path / "out") == snapshot(tmp_path / "fresh")
    assert ledger_rows(tmp_path / "out") == ledger_rows(tmp_path / "fresh")
    db = sqlite3.connect(tmp_path / "out" / "ledger.sqlite")
    assert db.execute("SELECT source, messages FROM files ORDER BY source").fetchall() == [
        ("f.hl7", 3),
        ("g.json", 1),
    ]
    assert db.execute("SELECT COUNT(*) FROM stale").fetchone() == (0,)
    db.close()


def test_stale_outputs_listed_by_a_killed_run_are_deleted_by_the_next(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "processed").mkdir()
    orphan = out / "processed" / "x.r1.bundle.json"
    orphan.write_bytes(b"{}")
    ledger = Ledger(out)
    ledger._db.execute("INSERT INTO stale VALUES ('processed/x.r1.bundle.json')")
    ledger.close()  # "killed" after the commit, before the deletion
    (tmp_path / "in").mkdir()
    run_batch(_options(tmp_path), LOG)
    assert not orphan.exists()
    db = sqlite3.connect(out / "ledger.sqlite")
    assert db.execute("SELECT COUNT(*) FROM stale").fetchone() == (0,)
    db.close()

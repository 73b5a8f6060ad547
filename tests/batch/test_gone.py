"""Files that left IN (deleted, renamed, moved into another folder) leave the ledger, the
totals and OUT after a complete pass: the end state equals a fresh run over IN as it is."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from leukofhir.batch import BatchOptions, BatchResult, run_batch
from leukofhir.batch import work as work_module
from leukofhir.batch.gone import Seen
from leukofhir.batch.ledger import Ledger
from leukofhir.logs import get_logger
from tests.batch.helpers import age, file_rows, ledger_rows, make_inputs, snapshot
from tests.conftest import NOW

LOG = get_logger("test.batch")


def _options(tmp_path: Path, out: str = "out", **changes: Any) -> BatchOptions:
    options = BatchOptions(
        source=tmp_path / "in", out=tmp_path / out, workers=1, min_age=0, now=NOW, progress=False
    )
    return replace(options, **changes)


def _totals(result: BatchResult) -> dict[str, Any]:
    return {k: v for k, v in result.summary.items() if k != "this_run"}


def assert_as_fresh(tmp_path: Path, result: BatchResult) -> None:
    """OUT equals a fresh run's over IN as it is: outputs, ledger rows, files, totals."""
    fresh = run_batch(_options(tmp_path, out="fresh"), LOG)
    assert _totals(result) == _totals(fresh)
    assert snapshot(tmp_path / "out") == snapshot(tmp_path / "fresh")
    assert ledger_rows(tmp_path / "out") == ledger_rows(tmp_path / "fresh")
    assert file_rows(tmp_path / "out") == file_rows(tmp_path / "fresh")
    db = sqlite3.connect(tmp_path / "out" / "ledger.sqlite")
    assert db.execute("SELECT COUNT(*) FROM stale").fetchone() == (0,)
    db.close()


def test_a_deleted_file_leaves_the_ledger_the_totals_and_out(tmp_path: Path) -> None:
    make_inputs(tmp_path / "in", 12, per_file=3)
    make_inputs(tmp_path / "in" / "sub", 4, per_file=1, seed=8)
    first = run_batch(_options(tmp_path), LOG)
    assert first.summary["messages"]["total"] == 16
    (tmp_path / "in" / "gen-7-000003.hl7").unlink()
    (tmp_path / "in" / "sub" / "gen-8-000000.hl7").unlink()
    second = run_batch(_options(tmp_path), LOG)
    assert second.summary["messages"]["total"] == 12
    assert second.summary["this_run"]["files"] == {"removed": 2, "unchanged": 6}
    assert second.exit_code == 0
    assert_as_fresh(tmp_path, second)


def test_a_renamed_file_is_new_under_its_new_name_and_the_old_name_leaves(tmp_path: Path) -> None:
    source = tmp_path / "in"
    make_inputs(source, 6, per_file=2)
    run_batch(_options(tmp_path), LOG)
    (source / "gen-7-000000.hl7").rename(source / "renamed.hl7")
    (source / "later").mkdir()
    (source / "gen-7-000002.hl7").rename(source / "later" / "moved.hl7")
    second = run_batch(_options(tmp_path), LOG)
    assert second.summary["this_run"]["files"] == {"new": 2, "removed": 2, "unchanged": 1}
    assert second.summary["messages"]["total"] == 6
    bundles = [json.loads(p.read_bytes()) for p in (tmp_path / "out").rglob("*.bundle.json")]
    assert len(bundles) == 6  # no control id has two Bundles
    assert_as_fresh(tmp_path, second)


def test_a_rejected_message_leaves_with_its_file_and_the_exit_code_follows(
    tmp_path: Path,
) -> None:
    make_inputs(tmp_path / "in", 2, per_file=1)
    (tmp_path / "in" / "bad.hl7").write_bytes(b"not a message")
    age(tmp_path / "in" / "bad.hl7", 5)
    assert run_batch(_options(tmp_path), LOG).exit_code == 1
    (tmp_path / "in" / "bad.hl7").unlink()
    second = run_batch(_options(tmp_path), LOG)
    assert second.exit_code == 0
    assert not list((tmp_path / "out" / "rejected").rglob("*.*"))
    assert (tmp_path / "out" / "rejected.ndjson").read_text() == ""
    assert_as_fresh(tmp_path, second)


def test_young_files_files_in_transit_and_folders_that_cannot_be_listed_are_not_gone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_inputs(tmp_path / "in", 4, per_file=1)
    make_inputs(tmp_path / "in" / "locked", 2, per_file=1, seed=8)
    run_batch(_options(tmp_path), LOG)
    before = [row for row in ledger_rows(tmp_path / "out") if row[0] != "gen-7-000002.hl7"]
    os.utime(tmp_path / "in" / "gen-7-000000.hl7")  # being written to: young again
    (tmp_path / "in" / "gen-7-000002.hl7").unlink()  # gone, unlike the others
    in_transit = tmp_path / "in" / "gen-7-000003.hl7"
    in_transit.rename(in_transit.with_name("gen-7-000003.hl7.part"))  # being sent again
    real_scandir = os.scandir

    def scandir(path: Any) -> Any:
        if str(path).endswith("locked"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    result = run_batch(_options(tmp_path, min_age=60), LOG)
    assert result.summary["this_run"]["files"] == {"removed": 1, "unchanged": 1}
    assert result.summary["this_run"]["left_for_later_or_ignored"] == {"partial": 1, "young": 1}
    assert result.summary["this_run"]["folders_unreadable"] == ["locked/: Permission denied"]
    assert ledger_rows(tmp_path / "out") == before


def test_an_interrupted_pass_removes_nothing_the_next_complete_one_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_inputs(tmp_path / "in", 4, per_file=1)
    run_batch(_options(tmp_path), LOG)
    (tmp_path / "in" / "gen-7-000000.hl7").unlink()
    make_inputs(tmp_path / "in" / "new", 1, per_file=1, seed=9)
    real_run = work_module.Worker.run

    def interrupted(self: work_module.Worker, task: work_module.FileTask) -> Any:
        os.kill(os.getpid(), signal.SIGINT)  # as a Ctrl-C during the pass
        return real_run(self, task)

    monkeypatch.setattr(work_module.Worker, "run", interrupted)
    stopped = run_batch(_options(tmp_path), LOG)
    assert stopped.summary["this_run"]["stopped"] == "stopped by a signal"
    assert "removed" not in stopped.summary["this_run"]["files"]
    assert stopped.summary["messages"]["total"] == 5  # the deleted file's row is still there
    monkeypatch.undo()
    final = run_batch(_options(tmp_path), LOG)
    assert final.summary["this_run"]["files"]["removed"] == 1
    assert_as_fresh(tmp_path, final)


def test_an_empty_in_removes_nothing_and_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An unmounted share looks like an empty folder: OUT is never emptied for it."""
    make_inputs(tmp_path / "in", 3, per_file=1)
    run_batch(_options(tmp_path), LOG)
    for path in (tmp_path / "in").iterdir():
        path.unlink()
    capsys.readouterr()
    result = run_batch(_options(tmp_path), LOG)
    assert result.summary["messages"]["total"] == 3
    assert "IN holds no file" in capsys.readouterr().err


def test_files_the_batch_moved_out_of_in_stay(tmp_path: Path) -> None:
    source = tmp_path / "in"
    make_inputs(source, 3, per_file=1)
    (source / "bad.hl7").write_bytes(b"junk")
    age(source / "bad.hl7", 10)
    moved = replace(
        _options(tmp_path), move_processed=tmp_path / "done", move_rejected=tmp_path / "failed"
    )
    first = run_batch(moved, LOG)
    assert first.summary["this_run"]["files"]["moved"] == 4
    outputs = snapshot(tmp_path / "out")
    for options in (moved, _options(tmp_path)):  # with or without the move options
        again = run_batch(options, LOG)
        assert "removed" not in again.summary["this_run"]["files"]
        assert again.summary["messages"]["total"] == 4
        assert snapshot(tmp_path / "out") == outputs
    db = sqlite3.connect(tmp_path / "out" / "ledger.sqlite")
    assert db.execute("SELECT DISTINCT moved FROM files").fetchall() == [(1,)]
    db.close()


def test_a_version_2_ledger_is_migrated_and_its_gone_files_removed_unless_moving(
    tmp_path: Path,
) -> None:
    make_inputs(tmp_path / "in", 3, per_file=1)
    run_batch(_options(tmp_path), LOG)
    db = sqlite3.connect(tmp_path / "out" / "ledger.sqlite")  # back to version 2
    db.executescript(
        "ALTER TABLE files DROP COLUMN moved;"
        " UPDATE meta SET value = '2' WHERE key = 'schema_version';"
    )
    db.close()
    (tmp_path / "in" / "gen-7-000001.hl7").unlink()
    # version 2 did not record moves: a run that moves files keeps the file's rows
    moving = run_batch(_options(tmp_path, move_processed=tmp_path / "done"), LOG)
    assert "removed" not in moving.summary["this_run"]["files"]
    ledger = Ledger(tmp_path / "out")
    try:
        assert ledger.get_meta("schema_version") == "3"
        moves = dict(ledger._db.execute("SELECT source, moved FROM files").fetchall())
    finally:
        ledger.close()
    assert moves == {"gen-7-000000.hl7": 1, "gen-7-000001.hl7": None, "gen-7-000002.hl7": 1}
    (tmp_path / "done").rename(tmp_path / "in" / "back")  # the moved files come back in
    plain = run_batch(_options(tmp_path), LOG)  # a run that moves nothing removes it
    assert plain.summary["this_run"]["files"] == {"new": 2, "removed": 1}


def test_seen_gives_what_the_ledger_has_and_the_scan_did_not_find(tmp_path: Path) -> None:
    """UTF-8 byte order (as SQLite orders TEXT), spilled runs, unlisted folders."""
    names = ["a.hl7", "b/x.hl7", "b/y.hl7", "z.hl7", "é.hl7", "ü/1", "中.hl7", "\U0001f600"]
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE files (source TEXT PRIMARY KEY)")
    db.executemany("INSERT INTO files VALUES (?)", [(n,) for n in names])
    recorded = [str(s) for (s,) in db.execute("SELECT source FROM files ORDER BY source")]
    seen = Seen(limit=2, directory=tmp_path)
    for name in ["\U0001f600", "z.hl7", "a.hl7", "new.hl7", "é.hl7"]:
        seen.add(name)
    assert list(seen.gone(recorded)) == ["b/x.hl7", "b/y.hl7", "ü/1", "中.hl7"]
    seen = Seen(limit=2, directory=tmp_path)
    seen.add("a.hl7")
    assert list(seen.gone(recorded, unlisted=["b/", "ü/"])) == ["z.hl7", "é.hl7", "中.hl7",
                                                                "\U0001f600"]  # fmt: skip
    assert list(Seen(limit=2).gone(recorded, unlisted=[""])) == []
    assert list(tmp_path.iterdir()) == []  # the spilled runs were anonymous

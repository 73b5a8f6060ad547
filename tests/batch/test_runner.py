"""The batch in-process: exact counts, re-runs, retries, bad input, a full disk, moves."""

from __future__ import annotations

import errno
import json
import os
import random
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from leukofhir.batch import BatchOptions, run_batch
from leukofhir.batch import work as work_module
from leukofhir.batch.store import Store
from leukofhir.logs import get_logger
from leukofhir.pipeline import Disposition, MessageOutcome
from tests.batch.helpers import age, ledger_rows, make_inputs, snapshot
from tests.conftest import NOW

LOG = get_logger("test.batch")


def _options(tmp_path: Path, **changes: Any) -> BatchOptions:
    options = BatchOptions(
        source=tmp_path / "in", out=tmp_path / "out", workers=1, min_age=0, now=NOW, progress=False
    )
    return replace(options, **changes)


def _summary(out: Path) -> dict[str, Any]:
    result: dict[str, Any] = json.loads((out / "summary.json").read_bytes())
    return result


def test_counts_add_up_and_a_rerun_does_only_what_is_new(tmp_path: Path) -> None:
    make_inputs(tmp_path / "in", 40, per_file=10)
    make_inputs(tmp_path / "in" / "sub", 5, per_file=1, seed=8)
    result = run_batch(_options(tmp_path), LOG)
    assert result.exit_code == 0
    assert result.summary["messages"] == {"total": 45, "processed": 45, "skipped": 0, "rejected": 0}
    assert result.summary["reports"] == 45
    assert len(list((tmp_path / "out" / "processed").rglob("*.bundle.json"))) == 45
    first = snapshot(tmp_path / "out")

    again = run_batch(_options(tmp_path), LOG)
    assert again.summary["this_run"]["messages"] == {}
    assert again.summary["this_run"]["files"] == {"unchanged": 9}
    assert snapshot(tmp_path / "out") == first

    # a file that grew: only its new messages are processed
    grown = tmp_path / "in" / "gen-7-000000.hl7"
    extra = (tmp_path / "in" / "sub" / "gen-8-000000.hl7").read_bytes()
    grown.write_bytes(grown.read_bytes() + extra)
    age(grown, 50)
    third = run_batch(_options(tmp_path), LOG)
    assert third.summary["this_run"]["messages"] == {"processed": 1}
    assert third.summary["this_run"]["files"] == {"changed": 1, "unchanged": 8}
    assert third.summary["messages"]["total"] == 46


def test_workers_give_the_same_outputs_as_one(tmp_path: Path) -> None:
    make_inputs(tmp_path / "in", 60, per_file=3)
    run_batch(_options(tmp_path), LOG)
    run_batch(_options(tmp_path, out=tmp_path / "out2", workers=2, files_per_task=2), LOG)
    assert snapshot(tmp_path / "out") == snapshot(tmp_path / "out2")
    assert ledger_rows(tmp_path / "out") == ledger_rows(tmp_path / "out2")


def test_retry_rejected_reprocesses_and_removes_the_old_quarantine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_inputs(tmp_path / "in", 6, per_file=3)
    real = work_module.process_message

    def broken(raw: Any, context: Any) -> MessageOutcome:
        return MessageOutcome(raw.index, raw.offset, Disposition.REJECTED)

    monkeypatch.setattr(work_module, "process_message", broken)
    assert run_batch(_options(tmp_path), LOG).summary["messages"]["rejected"] == 6
    assert len(list((tmp_path / "out" / "rejected").rglob("*.hl7"))) == 6
    monkeypatch.setattr(work_module, "process_message", real)  # "the rule was fixed"
    assert run_batch(_options(tmp_path), LOG).summary["this_run"]["messages"] == {}
    result = run_batch(_options(tmp_path, retry_rejected=True), LOG)
    assert result.summary["this_run"]["messages"] == {"processed": 6}
    assert result.summary["messages"] == {"total": 6, "processed": 6, "skipped": 0, "rejected": 0}
    assert not list((tmp_path / "out" / "rejected").rglob("*.*"))


def test_bad_input_never_stops_the_batch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = tmp_path / "in"
    make_inputs(source, 4, per_file=1)
    bad = {
        "empty.hl7": b"",
        "binary.bin": bytes(range(256)) * 64,
        # the same every run, and no framing byte or line end at either edge (the framer
        # trims those: the garbage between them is what is kept byte for byte)
        "garbage.dat": b"Z" + random.Random(10).randbytes(10 * 1024 * 1024) + b"Z",
        "unreadable.hl7": b"MSH|^~\\&|",
        "vanishing.hl7": b"MSH|^~\\&|",
    }
    for n, (name, data) in enumerate(bad.items()):
        (source / name).write_bytes(data)
        age(source / name, 100 + n)
    (source / "loop").symlink_to(source)

    real_read = work_module.read_input

    def fake_read(path: str) -> Any:
        if path.endswith("unreadable.hl7"):
            raise PermissionError(errno.EACCES, "Permission denied", path)
        return real_read(path)

    real_run = work_module.Worker.run

    def run(self: work_module.Worker, task: work_module.FileTask) -> work_module.FileResult:
        if task.source == "vanishing.hl7":
            Path(task.path).unlink()
        return real_run(self, task)

    monkeypatch.setattr(work_module, "read_input", fake_read)
    monkeypatch.setattr(work_module.Worker, "run", run)
    result = run_batch(_options(tmp_path), LOG)
    summary = result.summary
    assert result.exit_code == 1
    assert summary["messages"] == {"total": 7, "processed": 4, "skipped": 0, "rejected": 3}
    assert summary["this_run"]["files"] == {"new": 7, "unreadable": 1, "vanished": 1}
    assert summary["this_run"]["left_for_later_or_ignored"] == {"loop": 1}
    kept = {p.read_bytes() for p in (tmp_path / "out" / "rejected").rglob("*.hl7")}
    assert kept == {bad["empty.hl7"], bad["binary.bin"], bad["garbage.dat"]}  # byte for byte
    outcomes = list((tmp_path / "out" / "rejected").rglob("*.outcome.json"))
    assert len(outcomes) == 3
    rejected = (tmp_path / "out" / "rejected.ndjson").read_text().splitlines()
    assert len(rejected) == 3
    # the unreadable file is tried again on the next run
    monkeypatch.undo()
    again = run_batch(_options(tmp_path), LOG)
    assert again.summary["this_run"]["files"]["new"] == 1
    assert again.summary["messages"]["total"] == 8


def test_a_full_disk_stops_cleanly_and_the_rerun_completes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_inputs(tmp_path / "in", 30, per_file=1)
    real_write = Store.write
    budget = {"writes": 25}

    def write(self: Store, relative: str, data: bytes) -> None:
        if relative.startswith("processed/"):
            budget["writes"] -= 1
            if budget["writes"] < 0:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_write(self, relative, data)

    monkeypatch.setattr(Store, "write", write)
    result = run_batch(_options(tmp_path), LOG)
    assert result.exit_code == 3
    assert "No space left on device" in result.error
    assert result.summary["this_run"]["stopped"] == result.error
    done = result.summary["messages"]["total"]
    assert 0 < done < 30
    assert len(ledger_rows(tmp_path / "out")) == done  # consistent: rows only with outputs
    monkeypatch.undo()
    final = run_batch(_options(tmp_path), LOG)
    assert final.exit_code == 0
    assert final.summary["messages"]["total"] == 30
    clean = run_batch(_options(tmp_path, out=tmp_path / "clean"), LOG)
    assert clean.exit_code == 0
    assert snapshot(tmp_path / "out") == snapshot(tmp_path / "clean")


def test_moves_are_atomic_and_never_overwrite(tmp_path: Path) -> None:
    source = tmp_path / "in"
    make_inputs(source, 3, per_file=1)
    (source / "bad.hl7").write_bytes(b"not hl7")
    age(source / "bad.hl7", 10)
    done, failed = tmp_path / "done", tmp_path / "failed"
    (done).mkdir()
    (done / "gen-7-000000.hl7").write_bytes(b"already there")
    options = _options(tmp_path, move_processed=done, move_rejected=failed)
    result = run_batch(options, LOG)
    assert result.summary["this_run"]["files"]["moved"] == 4
    assert not list(source.iterdir())
    assert (done / "gen-7-000000.hl7").read_bytes() == b"already there"
    assert sorted(p.name for p in done.iterdir()) == [
        "gen-7-000000.hl7",
        "gen-7-000000.hl7.1",
        "gen-7-000001.hl7",
        "gen-7-000002.hl7",
    ]
    assert (failed / "bad.hl7").read_bytes() == b"not hl7"


def test_a_spilled_scan_gives_the_same_out_and_a_full_spill_disk_stops_cleanly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tempfile

    make_inputs(tmp_path / "in", 20, per_file=1)
    small = run_batch(_options(tmp_path, sort_limit=3), LOG)
    assert small.exit_code == 0
    assert run_batch(_options(tmp_path, out=tmp_path / "whole"), LOG).exit_code == 0
    assert snapshot(tmp_path / "out") == snapshot(tmp_path / "whole")
    assert ledger_rows(tmp_path / "out") == ledger_rows(tmp_path / "whole")

    def full(*args: object, **kwargs: object) -> object:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(tempfile, "TemporaryFile", full)
    stopped = run_batch(_options(tmp_path, out=tmp_path / "full", sort_limit=3), LOG)
    assert stopped.exit_code == 3
    assert "No space left on device" in stopped.error
    monkeypatch.undo()
    resumed = run_batch(_options(tmp_path, out=tmp_path / "full", sort_limit=3), LOG)
    assert resumed.exit_code == 0
    assert snapshot(tmp_path / "full") == snapshot(tmp_path / "whole")

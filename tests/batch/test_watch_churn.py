"""A real ``--watch`` batch while another thread appends to, creates, renames, moves,
replaces and deletes files in IN: once IN is quiet and a pass has seen it, OUT (outputs,
ledger rows, files, totals) equals a fresh run over the same files, and the exit code is 0
(nothing is rejected in the end)."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from tests.batch.helpers import (
    NOW,
    batch_argv,
    batch_env,
    file_rows,
    generate_messages,
    ledger_rows,
    make_inputs,
    snapshot,
    stop,
    watching,
)


class Churn(threading.Thread):
    """Seeded random changes to the files under ``source`` for ``seconds``."""

    def __init__(self, source: Path, seconds: float, seed: int) -> None:
        super().__init__(daemon=True)
        self.source = source
        self.seconds = seconds
        self.rng = random.Random(seed)
        self.pool = iter(generate_messages(2000, seed))
        self.done: Counter[str] = Counter()
        self.error: BaseException | None = None
        self.names = 0
        self.floor = 30  # files kept at least

    def run(self) -> None:
        try:
            deadline = time.monotonic() + self.seconds
            while time.monotonic() < deadline:
                self.step()
                time.sleep(self.rng.uniform(0.005, 0.03))
        except BaseException as exc:  # reported by the test
            self.error = exc

    def fresh_name(self, folder: Path) -> Path:
        self.names += 1
        return folder / f"churn-{self.names:05d}.hl7"

    def step(self) -> None:
        files = sorted(p for p in self.source.rglob("*.hl7") if p.is_file())
        folders = [self.source, *sorted(p for p in self.source.rglob("*") if p.is_dir())]
        operation = self.rng.choice(
            ["append", "append", "create", "rename", "move", "replace", "delete", "drop folder"]
        )
        if operation in ("replace", "delete", "drop folder") and len(files) < self.floor:
            operation = "create"  # IN never empties: an empty IN removes nothing (on purpose)
        if operation == "create":
            path = self.fresh_name(self.rng.choice(folders))
            path.write_bytes(next(self.pool) + next(self.pool))
        elif operation == "append":
            with self.rng.choice(files).open("ab") as handle:
                handle.write(next(self.pool))  # one write: a message arrives whole
        elif operation == "rename":
            path = self.rng.choice(files)
            path.rename(self.fresh_name(path.parent))
        elif operation == "move":  # into another folder, maybe a new one
            path = self.rng.choice(files)
            folder = self.rng.choice([*folders, self.source / f"sub{self.rng.randrange(4)}"])
            folder.mkdir(exist_ok=True)
            path.rename(self.fresh_name(folder))
        elif operation == "replace" and len(files) > 1:  # rename over another file
            first, second = self.rng.sample(files, 2)
            first.replace(second)
        elif operation == "drop folder" and len(folders) > 1:
            shutil.rmtree(self.rng.choice(folders[1:]))
        else:
            self.rng.choice(files).unlink()
        self.done[operation] += 1


def _summary_id(out: Path) -> int:
    try:
        return (out / "summary.json").stat().st_ino  # replaced (renamed) at every write
    except FileNotFoundError:
        return 0


def _wait_for_summaries(out: Path, count: int, timeout: float = 60.0) -> None:
    """Until ``summary.json`` has been written ``count`` more times (a pass each)."""
    deadline = time.monotonic() + timeout
    last = _summary_id(out)
    while count:
        assert time.monotonic() < deadline, "the batch wrote no summary"
        time.sleep(0.02)
        now = _summary_id(out)
        if now != last:
            last, count = now, count - 1


def _totals(out: Path) -> dict[str, Any]:
    summary = json.loads((out / "summary.json").read_bytes())
    return {k: v for k, v in summary.items() if k != "this_run"}


def test_watch_under_churn_ends_as_a_fresh_run(tmp_path: Path) -> None:
    source, out, fresh = tmp_path / "in", tmp_path / "out", tmp_path / "fresh"
    make_inputs(source, 60, per_file=2, seed=31)
    make_inputs(source / "sub0", 20, per_file=1, seed=32)
    with watching(source, out, "--interval", "0.05", "--workers", "2", "--now", NOW) as process:
        _wait_for_summaries(out, 1)
        churn = Churn(source, seconds=6.0, seed=20260102)
        churn.start()
        churn.join(timeout=60)
        assert churn.error is None, churn.error
        assert min(churn.done[k] for k in ("append", "rename", "move", "delete")) > 0
        _wait_for_summaries(out, 2)  # the second pass began after the last change
        _, stderr = stop(process)
    assert process.returncode == 0, stderr.decode()[-3000:]
    assert b"Traceback" not in stderr
    completed = subprocess.run(
        batch_argv(source, fresh, "--workers", "1", "--now", NOW),
        env=batch_env(),
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr.decode()[-3000:]
    assert _totals(out) == _totals(fresh)
    assert file_rows(out) == file_rows(fresh)
    assert ledger_rows(out) == ledger_rows(fresh)
    assert snapshot(out) == snapshot(fresh)
    control_ids = [row[4] for row in ledger_rows(out)]
    assert len(control_ids) == len(set(control_ids))  # no control id twice

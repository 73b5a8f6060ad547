"""SIGKILL at random moments, re-run: OUT ends exactly as after one uninterrupted run."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import time
from pathlib import Path

from tests.batch.helpers import (
    age,
    batch_argv,
    batch_env,
    ledger_rows,
    make_inputs,
    snapshot,
)


def _inputs(folder: Path) -> None:
    make_inputs(folder / "single", 600, per_file=1, seed=11)
    make_inputs(folder / "multi", 1200, per_file=60, seed=12)
    make_inputs(folder / "daily", 600, per_file=3, seed=13, patients=20)  # the lifecycle
    (folder / "bad").mkdir()
    (folder / "bad" / "empty.hl7").write_bytes(b"")
    (folder / "bad" / "binary.dat").write_bytes(bytes(range(256)) * 40)
    (folder / "bad" / "text.txt").write_bytes(b"hello\nworld\n")
    for n, path in enumerate(sorted((folder / "bad").iterdir())):
        age(path, n)


def _run(source: Path, out: Path, *extra: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        batch_argv(source, out, "--workers", "2", *extra),
        env=batch_env(),
        capture_output=True,
        timeout=120,
        check=False,
    )


def _recorded(out: Path) -> str:
    bundle = next((out / "processed").rglob("*.bundle.json"))
    entries = json.loads(bundle.read_bytes())["entry"]
    provenance = next(e for e in entries if e["resource"]["resourceType"] == "Provenance")
    return str(provenance["resource"]["recorded"])


def test_sigkill_at_random_moments_then_resume_equals_an_uninterrupted_run(
    tmp_path: Path,
) -> None:
    source = tmp_path / "in"
    _inputs(source)
    killed = tmp_path / "killed"
    rng = random.Random(20260101)
    kills = 0
    for _ in range(4):
        process = subprocess.Popen(
            batch_argv(source, killed, "--workers", "2"),
            env=batch_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(rng.uniform(0.3, 1.6))
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            kills += 1
        process.wait(timeout=60)
    assert kills >= 2, "the batch finished before it could be killed: make the input bigger"
    final = _run(source, killed)  # no --now: the first pass's time comes from the ledger
    assert final.returncode == 1, final.stderr.decode()[-2000:]  # the bad files are rejected

    # the same pass uninterrupted, with the processing time the killed pass used
    recorded = _recorded(killed)
    clean = tmp_path / "clean"
    assert _run(source, clean, "--now", recorded).returncode == 1

    killed_files, clean_files = snapshot(killed), snapshot(clean)
    assert sorted(killed_files) == sorted(clean_files)
    assert killed_files == clean_files
    assert ledger_rows(killed) == ledger_rows(clean)
    assert not list(killed.rglob("*.tmp"))
    summary = json.loads((killed / "summary.json").read_bytes())
    assert summary["messages"] == {"total": 2403, "processed": 2400, "skipped": 0, "rejected": 3}
    # one message, one row; nothing written twice
    rows = ledger_rows(killed)
    assert len({(r[0], r[1], r[3]) for r in rows}) == len(rows) == 2403
    # a further run finds nothing to do
    again = _run(source, killed)
    assert b'"this_run"' not in again.stdout
    assert json.loads((killed / "summary.json").read_bytes())["this_run"]["messages"] == {}
    assert snapshot(killed) == clean_files

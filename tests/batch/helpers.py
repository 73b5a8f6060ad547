"""Shared helpers for the batch tests: generated input folders and OUT snapshots."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))

from generate import generate_messages

SRC = ROOT / "src"
NOW = "2026-01-01T00:00:00+00:00"
OLD = 1_700_000_000  # an mtime well past any --min-age


def make_inputs(
    folder: Path, count: int, *, per_file: int = 1, seed: int = 7, patients: int = 0
) -> int:
    """``count`` generated messages in files of ``per_file``; mtimes one second apart.
    With ``patients``: a daily CBC of that many patients (standing Flags come and go)."""
    folder.mkdir(parents=True, exist_ok=True)
    messages = generate_messages(count, seed, patients=patients)
    files = 0
    for start in range(0, count, per_file):
        path = folder / f"gen-{seed}-{start:06d}.hl7"
        path.write_bytes(b"".join(messages[start : start + per_file]))
        os.utime(path, (OLD + files, OLD + files))
        files += 1
    return files


def age(path: Path, seconds: int = 0) -> None:
    os.utime(path, (OLD + seconds, OLD + seconds))


def snapshot(out: Path) -> dict[str, bytes]:
    """Every output file under OUT with its bytes (the ledger and summary left out)."""
    skip = {"summary.json", ".batch.lock"}
    return {
        str(p.relative_to(out)): p.read_bytes()
        for p in sorted(out.rglob("*"))
        if p.is_file() and p.name not in skip and not p.name.startswith("ledger.sqlite")
    }


def ledger_rows(out: Path) -> list[tuple[object, ...]]:
    db = sqlite3.connect(out / "ledger.sqlite")
    try:
        return db.execute(
            "SELECT source, offset, idx, sha256, control_id, outcome, reports, findings,"
            " reason, outputs, recorded FROM messages ORDER BY source, offset, sha256"
        ).fetchall()
    finally:
        db.close()


def file_rows(out: Path) -> list[tuple[object, ...]]:
    """The ledger's files table (what the batch knows of each input file), by source."""
    db = sqlite3.connect(out / "ledger.sqlite")
    try:
        return db.execute(
            "SELECT source, size, mtime_ns, state, messages, error FROM files ORDER BY source"
        ).fetchall()
    finally:
        db.close()


def batch_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(SRC)}


def batch_argv(source: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "leukofhir.cli", "--log-format", "json", "batch",
            str(source), "--out", str(out), "--min-age", "0", *extra]  # fmt: skip


@contextmanager
def watching(source: Path, out: Path, *extra: str) -> Iterator[subprocess.Popen[bytes]]:
    """A real ``batch --watch`` subprocess (stdout and stderr piped), killed if still running
    at the end; :func:`stop` ends it as an operator would."""
    process = subprocess.Popen(
        batch_argv(source, out, "--watch", *extra),
        env=batch_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def stop(process: subprocess.Popen[bytes]) -> tuple[bytes, bytes]:
    """SIGTERM, then its stdout and stderr once it has ended."""
    process.send_signal(signal.SIGTERM)
    return process.communicate(timeout=60)


def wait_for(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)

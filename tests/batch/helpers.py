"""Shared helpers for the batch tests: generated input folders and OUT snapshots."""

from __future__ import annotations

import os
import sqlite3
import sys
from pathlib import Path

from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))

from generate import generate_messages

SRC = ROOT / "src"
NOW = "2026-01-01T00:00:00+00:00"
OLD = 1_700_000_000  # an mtime well past any --min-age


def make_inputs(folder: Path, count: int, *, per_file: int = 1, seed: int = 7) -> int:
    """``count`` generated messages in files of ``per_file``; mtimes one second apart."""
    folder.mkdir(parents=True, exist_ok=True)
    messages = generate_messages(count, seed)
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


def batch_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(SRC)}


def batch_argv(source: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "leukofhir.cli", "--log-format", "json", "batch",
            str(source), "--out", str(out), "--min-age", "0", *extra]  # fmt: skip

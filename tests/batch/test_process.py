"""The batch as a command: a real full disk (tmpfs), --watch with SIGTERM, usage errors."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from leukofhir.cli import main
from tests.batch.helpers import (
    batch_argv,
    batch_env,
    ledger_rows,
    make_inputs,
    snapshot,
    stop,
    wait_for,
    watching,
)


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "disk"
    mount.mkdir()
    try:
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)],
            check=True,
            capture_output=True,
        )
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("cannot mount a tmpfs here (needs root); the in-process ENOSPC test covers it")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_real_full_disk_stops_with_a_clear_error_and_resumes(
    tmp_path: Path, tiny_disk: Path
) -> None:
    make_inputs(tmp_path / "in", 150, per_file=1)
    out = tiny_disk / "out"
    first = subprocess.run(
        batch_argv(tmp_path / "in", out, "--workers", "2", "--now", "2026-01-01T00:00:00Z"),
        env=batch_env(),
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert first.returncode == 3, first.stderr.decode()[-2000:]
    assert b"No space left on device" in first.stderr
    # the ledger may be full too (then SQLite rolled its last transaction back): it is
    # consistent either way, and every row it holds has its outputs
    assert len(ledger_rows(out)) < 150
    db = sqlite3.connect(out / "ledger.sqlite")
    assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    for (outputs,) in db.execute("SELECT outputs FROM messages"):
        assert all((out / name).is_file() for name in json.loads(outputs))
    db.close()
    assert not list(out.rglob("*.tmp"))
    # "free space": copy OUT to a roomy disk and resume there
    roomy = tmp_path / "roomy"
    shutil.copytree(out, roomy)
    resumed = subprocess.run(
        batch_argv(tmp_path / "in", roomy, "--workers", "2", "--now", "2026-01-01T00:00:00Z"),
        env=batch_env(),
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert resumed.returncode == 0, resumed.stderr.decode()[-2000:]
    assert len(ledger_rows(roomy)) == 150
    clean = tmp_path / "clean"
    argv = batch_argv(tmp_path / "in", clean, "--workers", "1", "--now", "2026-01-01T00:00:00Z")
    subprocess.run(argv, env=batch_env(), capture_output=True, timeout=60, check=True)
    assert snapshot(roomy) == snapshot(clean)


def test_watch_processes_arrivals_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    source, out = tmp_path / "in", tmp_path / "out"
    make_inputs(source, 3, per_file=1)
    with watching(source, out, "--interval", "0.1", "--workers", "2") as process:
        wait_for(lambda: len(list(out.glob("processed/*/*.bundle.json"))) == 3)
        make_inputs(source / "later", 2, per_file=1, seed=9)
        wait_for(lambda: len(list(out.glob("processed/*/*.bundle.json"))) == 5)
        stdout, stderr = stop(process)
    assert process.returncode == 0, stderr.decode()[-2000:]
    summary = json.loads((out / "summary.json").read_bytes())
    assert summary["messages"]["total"] == 5
    assert summary["this_run"]["stopped"] == "stopped by a signal"
    assert b"messages: 5" in stdout


def test_usage_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["batch", str(tmp_path / "missing"), "--out", str(tmp_path / "o")]) == 2
    assert main(["batch", str(tmp_path), "--out", str(tmp_path / "o"), "--workers", "0"]) == 2
    assert main(["batch", str(tmp_path), "--out", str(tmp_path / "o"), "--now", "x"]) == 2
    assert "leukofhir:" in capsys.readouterr().err


def test_command_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make_inputs(tmp_path / "in", 2, per_file=1)
    argv = ["--log-format", "json", "batch", str(tmp_path / "in"), "--out", str(tmp_path / "o")]
    assert main([*argv, "--min-age", "0", "--workers", "1", "--progress", "log"]) == 0
    (tmp_path / "in" / "bad.hl7").write_bytes(b"junk")
    os.utime(tmp_path / "in" / "bad.hl7", (1, 1))
    assert main([*argv, "--min-age", "0", "--workers", "1"]) == 1
    assert "rejected" in capsys.readouterr().out

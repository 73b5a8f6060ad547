"""``leukofhir replay`` and paths that are not message files: nothing blocks, every path gets
an outcome or a logged reason.  Named on the command line, a path that is missing, a
broken link, a FIFO, socket or device is a usage error (exit 2, nothing read); under a
folder, each is logged with its reason and counted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from leukofhir import inputfile
from leukofhir.cli import main
from tests.conftest import ROOT, SAMPLES

NORMAL = SAMPLES / "01-normal-cbc-5-part-diff.hl7"


def test_a_fifo_named_on_the_command_line_is_refused_at_once(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.hl7")
    completed = subprocess.run(
        [sys.executable, "-m", "leukofhir.cli", "replay", str(NORMAL), str(tmp_path / "pipe.hl7")],
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
        capture_output=True,
        timeout=60,  # it used to wait for a writer for ever
        check=False,
    )
    assert completed.returncode == 2
    assert completed.stdout == b""  # refused before anything was read
    assert completed.stderr.decode().strip() == (
        f"leukofhir: not a file or folder (a FIFO), not read: {tmp_path / 'pipe.hl7'}"
    )


def test_a_socket_a_device_and_a_broken_link_named_are_usage_errors(
    tmp_path: Path, unix_socket: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "broken.hl7").symlink_to(tmp_path / "nowhere")
    for path, reason in [
        (unix_socket, "not a file or folder (a socket), not read"),
        (Path("/dev/null"), "not a file or folder (a character device), not read"),
        (tmp_path / "broken.hl7", "broken symbolic link"),
        (tmp_path / "missing.hl7", "no such file or folder"),
    ]:
        assert main(["replay", str(NORMAL), str(path)]) == 2
        captured = capsys.readouterr()
        assert captured.out == ""
        assert captured.err == f"leukofhir: {reason}: {path}\n"


def test_every_path_under_a_folder_gets_an_outcome_or_a_logged_reason(
    tmp_path: Path,
    unix_socket: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "a.hl7").write_bytes(NORMAL.read_bytes())
    (folder / "locked").mkdir()
    (folder / "locked" / "b.hl7").write_bytes(NORMAL.read_bytes())
    (folder / "secret.hl7").write_bytes(NORMAL.read_bytes())
    os.mkfifo(folder / "pipe.hl7")
    (folder / "sock.hl7").symlink_to(unix_socket)
    (folder / "broken.hl7").symlink_to(tmp_path / "nowhere")
    (folder / "elsewhere").symlink_to(folder / "sub")
    real_scandir, real_read = os.scandir, inputfile.read_input

    def scandir(path: Any) -> Any:
        if str(path).endswith("locked"):  # the tests run as root: chmod would not stop it
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    def read_input(path: Any) -> Any:
        if str(path).endswith("secret.hl7"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_read(path)

    monkeypatch.setattr(os, "scandir", scandir)
    monkeypatch.setattr(inputfile, "read_input", read_input)  # the CLI imports it when it runs
    code = main(["--log-format", "json", "replay", str(folder), "--now", "2026-01-01T00:00:00Z"])
    captured = capsys.readouterr()
    assert code == 1  # files that could not be read
    assert len([line for line in captured.out.splitlines() if '"Bundle"' in line]) == 1
    logged = [json.loads(line) for line in captured.err.splitlines()]
    reasons = {
        Path(line["file"]).name: line.get("reason") or line.get("error")
        for line in logged
        if line["event"] in ("path skipped", "file unreadable")
    }
    assert reasons == {
        "broken.hl7": "broken symbolic link",
        "elsewhere": "link to a folder, not followed",
        "locked": "folder not readable: Permission denied",
        "pipe.hl7": "not a regular file (a FIFO)",
        "secret.hl7": "Permission denied",
        "sock.hl7": "not a regular file (a socket)",
    }
    (finished,) = [line for line in logged if line["event"] == "replay finished"]
    assert finished["unreadable_files"] == 3
    assert finished["skipped_paths"] == 3

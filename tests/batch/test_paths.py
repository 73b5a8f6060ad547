"""What is in IN besides message files never blocks or stops the batch, and never goes
unmentioned: FIFOs, sockets, broken links (logged, counted, named in summary.json), a
name that is not UTF-8 (processed), a FIFO put in a file's place (refused at once)."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from leukofhir.batch import BatchOptions, run_batch
from leukofhir.batch.work import FileTask, Worker, WorkerConfig
from leukofhir.logs import get_logger
from tests.batch.helpers import (
    batch_argv,
    batch_env,
    ledger_rows,
    make_inputs,
    stop,
    wait_for,
    watching,
)
from tests.conftest import NOW

LOG = get_logger("test.batch")


def _options(tmp_path: Path, **changes: Any) -> BatchOptions:
    options = BatchOptions(
        source=tmp_path / "in", out=tmp_path / "out", workers=1, min_age=0, now=NOW, progress=False
    )
    return replace(options, **changes)


def _special_files(source: Path, unix_socket: Path) -> None:
    make_inputs(source, 2, per_file=1)
    os.mkfifo(source / "pipe.hl7")
    (source / "sock.hl7").symlink_to(unix_socket)
    (source / "broken.hl7").symlink_to(source / "nowhere")
    (source / "link.hl7").symlink_to(source / "gen-7-000000.hl7")  # a link to a file: read


def test_special_files_and_broken_links_are_passed_over_logged_and_counted(
    tmp_path: Path, unix_socket: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _special_files(tmp_path / "in", unix_socket)
    capsys.readouterr()
    result = run_batch(_options(tmp_path), LOG)
    assert result.exit_code == 0
    assert result.summary["messages"]["processed"] == 3
    run = result.summary["this_run"]
    assert run["left_for_later_or_ignored"] == {"FIFO": 1, "broken link": 1, "socket": 1}
    expected = {
        "pipe.hl7": "not a regular file (a FIFO)",
        "sock.hl7": "not a regular file (a socket)",
        "broken.hl7": "broken symbolic link",
    }
    assert {p["path"]: p["reason"] for p in run["passed_over"]} == expected
    summary = json.loads((tmp_path / "out" / "summary.json").read_bytes())
    assert summary["this_run"]["passed_over"] == run["passed_over"]
    logged = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    told = {line["file"]: line["reason"] for line in logged if line["event"] == "path passed over"}
    assert told == expected


def test_a_watch_batch_with_special_files_in_in_goes_on_and_tells_once(
    tmp_path: Path, unix_socket: Path
) -> None:
    source, out = tmp_path / "in", tmp_path / "out"
    _special_files(source, unix_socket)
    with watching(source, out, "--interval", "0.05", "--workers", "2") as process:
        make_inputs(source / "later", 1, per_file=1, seed=9)
        wait_for(lambda: len(list(out.glob("processed/*/*.bundle.json"))) == 4)
        time.sleep(0.3)  # a few more passes
        _, stderr = stop(process)
    assert process.returncode == 0, stderr.decode()[-2000:]
    told = [line for line in stderr.decode().splitlines() if "path passed over" in line]
    assert len(told) == 3  # each once, not once a pass


def test_in_that_is_a_fifo_is_a_usage_error(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "in")
    completed = subprocess.run(
        batch_argv(tmp_path / "in", tmp_path / "out"),
        env=batch_env(),
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 2
    assert b"not a file or folder (a FIFO)" in completed.stderr
    assert b"Traceback" not in completed.stderr


def test_a_file_name_that_is_not_utf8_is_processed(tmp_path: Path) -> None:
    source = tmp_path / "in"
    make_inputs(source, 1, per_file=1)
    (source / "gen-7-000000.hl7").rename(source / os.fsdecode(b"caf\xe9.hl7"))
    result = run_batch(_options(tmp_path), LOG)
    assert result.exit_code == 0
    assert [row[0] for row in ledger_rows(tmp_path / "out")] == ["caf\\xe9.hl7"]
    again = run_batch(_options(tmp_path), LOG)  # known by that name: unchanged, not gone
    assert again.summary["this_run"]["files"] == {"unchanged": 1}


def test_a_fifo_in_a_files_place_is_refused_not_waited_on(tmp_path: Path) -> None:
    """Listed as a file, replaced by a FIFO before the worker opens it."""
    fifo = tmp_path / "f.hl7"
    os.mkfifo(fifo)
    worker = Worker(WorkerConfig(out=str(tmp_path / "out")))
    result: list[Any] = []
    thread = threading.Thread(
        target=lambda: result.append(worker.run(FileTask(str(fifo), "f.hl7", NOW.isoformat()))),
        daemon=True,
    )
    thread.start()
    thread.join(timeout=10)
    if thread.is_alive():  # blocked in open(): let it go, then fail
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        os.close(fd)
        thread.join(timeout=10)
        pytest.fail("the worker waited for a writer on a FIFO")
    (file_result,) = result
    assert file_result.state == "unreadable"
    assert file_result.error == "not a regular file (a FIFO)"

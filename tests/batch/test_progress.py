"""Progress: structured log lines without a terminal, a rich bar on stderr with one."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from leukofhir.batch import BatchOptions, run_batch
from leukofhir.batch.summary import Progress, RunCounts
from tests.batch.helpers import make_inputs
from tests.conftest import NOW


class Recorder:
    """A logger that keeps what it is told (event, fields)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, dict[str, Any]]] = []

    def _log(self, level: str) -> Any:
        def log(event: str, **fields: Any) -> None:
            self.events.append((level, event, fields))

        return log

    def __getattr__(self, level: str) -> Any:
        return self._log(level)


def test_periodic_progress_lines_count_up_to_the_total(tmp_path: Path) -> None:
    make_inputs(tmp_path / "in", 12, per_file=1)
    log = Recorder()
    options = BatchOptions(
        source=tmp_path / "in",
        out=tmp_path / "out",
        workers=2,
        files_per_task=2,
        min_age=0,
        now=NOW,
        progress=False,
        progress_every=0.0,
    )
    result = run_batch(options, log)  # type: ignore[arg-type]
    assert result.exit_code == 0
    lines = [fields for level, event, fields in log.events if event == "progress"]
    assert len(lines) >= 2
    assert all(level == "info" for level, event, _ in log.events if event == "progress")
    for line in lines:  # numbers only: no name, no identifier, no value of a message
        assert set(line) >= {"files", "messages", "rate"}
        assert all(isinstance(v, int | float) for v in line.values())
    files = [line["files"] for line in lines]
    messages = [line["messages"] for line in lines]
    assert files == sorted(files)
    assert messages == sorted(messages)
    assert files[-1] == 12
    assert messages[-1] == 12
    assert lines[-1]["messages_processed"] == 12

    quiet = Recorder()
    run_batch(replace(options, out=tmp_path / "quiet", progress_every=3600.0), quiet)  # type: ignore[arg-type]
    assert not [e for e in quiet.events if e[1] == "progress"]  # not before every seconds


def test_the_bar_goes_to_stderr_with_counts_and_rate(capsys: pytest.CaptureFixture[str]) -> None:
    run = RunCounts()
    run.files["new"] = 3
    run.messages["processed"] = 300
    with Progress(Recorder(), bar=True) as progress:  # type: ignore[arg-type]
        assert progress.has_bar
        progress.set_total(3)
        progress.update(run)
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "files" in captured.err
    assert "3/3" in captured.err
    assert "msg/s" in captured.err


def test_delivery_has_a_row_of_its_own_and_fields_in_the_log(
    capsys: pytest.CaptureFixture[str],
) -> None:
    run = RunCounts()
    run.files["new"] = 3
    run.messages["processed"] = 3
    with Progress(Recorder(), bar=True) as progress:  # type: ignore[arg-type]
        progress.update(run, (2, 1))
    captured = capsys.readouterr()
    assert "delivered" in captured.err
    assert "doc/s, 1 retried" in captured.err
    log = Recorder()
    with Progress(log, bar=False, every=0.0) as progress:  # type: ignore[arg-type]
        progress.update(run, (2, 1))
    ((_, event, fields),) = log.events
    assert (event, fields["delivered"], fields["retried"]) == ("progress", 2, 1)

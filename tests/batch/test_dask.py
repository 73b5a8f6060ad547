"""``leukofhir batch --dask``: the same OUT as the process pool's, byte for byte, through a
LocalCluster on loopback, also when a Dask worker is SIGKILLed mid-task; a scheduler that
does not answer, a bad address and a missing Dask are clear errors."""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from leukofhir.cli import main
from tests.batch.helpers import (
    NOW,
    age,
    batch_argv,
    batch_env,
    file_rows,
    ledger_rows,
    make_inputs,
    snapshot,
    wait_for,
)

HAVE_DASK = importlib.util.find_spec("distributed") is not None
needs_dask = pytest.mark.skipif(
    not HAVE_DASK, reason="dask[distributed] is not installed (pip install 'leukofhir[dask]')"
)


def _run(source: Path, out: Path, *extra: str, **env: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        batch_argv(source, out, "--now", NOW, *extra),
        env={**batch_env(), **env},
        capture_output=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    source = tmp_path_factory.mktemp("dask") / "in"
    make_inputs(source / "single", 200, per_file=1, seed=21)
    make_inputs(source / "multi", 240, per_file=30, seed=22)
    make_inputs(source / "daily", 150, per_file=3, seed=23, patients=10)  # the lifecycle
    (source / "bad").mkdir()
    (source / "bad" / "binary.dat").write_bytes(bytes(range(256)) * 8)
    age(source / "bad" / "binary.dat")
    return source


@pytest.fixture(scope="module")
def pooled(inputs: Path) -> Path:
    """The process pool's OUT, the reference."""
    out = inputs.parent / "pool"
    result = _run(inputs, out, "--workers", "2")
    assert result.returncode == 1, result.stderr.decode()[-2000:]  # the binary file
    return out


def _same(out: Path, reference: Path) -> None:
    assert not list(out.rglob("*.tmp"))
    got, want = snapshot(out), snapshot(reference)
    assert sorted(got) == sorted(want)
    assert got == want
    assert ledger_rows(out) == ledger_rows(reference)
    assert file_rows(out) == file_rows(reference)
    summary = json.loads((out / "summary.json").read_bytes())
    expected = json.loads((reference / "summary.json").read_bytes())
    assert summary["messages"] == expected["messages"]
    assert summary["messages"] == {"total": 591, "processed": 590, "skipped": 0, "rejected": 1}


@needs_dask
def test_a_local_cluster_stopped_by_ctrl_c_then_resumed_writes_the_pools_out(
    inputs: Path, pooled: Path
) -> None:
    """Ctrl-C in a terminal signals the whole process group, the cluster's workers too:
    they ignore it (they used to die, and the batch waited for ever), the parent finishes
    the tasks in hand and stops; a re-run does the rest."""
    out = inputs.parent / "local"
    process = subprocess.Popen(
        batch_argv(inputs, out, "--now", NOW, "--workers", "2", "--dask", "local"),
        env=batch_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        # the ledger is opened once the cluster is up, then the first tasks go out
        wait_for(lambda: (out / "ledger.sqlite").exists() or process.poll() is not None, 60)
        os.killpg(process.pid, signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode in (0, 1), stderr.decode()[-2000:]
    stopped = json.loads((out / "summary.json").read_bytes())
    assert stopped["this_run"]["stopped"] == "stopped by a signal"
    # (with tasks of 128 files this input is 4 tasks: often all of them are in hand)
    result = _run(inputs, out, "--workers", "2", "--dask", "local")
    assert result.returncode == 1, result.stderr.decode()[-2000:]
    _same(out, pooled)


@pytest.fixture
def cluster() -> Iterator[Any]:
    from distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
            silence_logs=logging.ERROR,
        ) as local,
        Client(local) as client,
    ):
        yield client


@needs_dask
def test_a_worker_killed_mid_task_still_gives_the_pools_out(
    inputs: Path, pooled: Path, cluster: Any, tmp_path: Path
) -> None:
    from tests.batch.dask_kill import KillOnce

    marker = tmp_path / "killed"
    cluster.register_plugin(KillOnce(str(marker)))
    before = set(cluster.nthreads())
    out = tmp_path / "out"
    address = cluster.scheduler.address
    result = _run(inputs, out, "--dask", address)
    assert result.returncode == 1, result.stderr.decode()[-2000:]
    assert marker.exists(), "no worker was killed: the plugin did not fire"
    killed = int(marker.read_text())
    assert killed not in cluster.run(os.getpid).values()  # it is gone (the nanny replaced it)
    assert set(cluster.nthreads()) != before
    _same(out, pooled)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@needs_dask
def test_a_scheduler_that_does_not_answer_stops_with_exit_3(inputs: Path, tmp_path: Path) -> None:
    address = f"tcp://127.0.0.1:{_free_port()}"
    result = _run(
        inputs, tmp_path / "out", "--dask", address, DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT="1s"
    )
    assert result.returncode == 3
    assert f"cannot reach {address}" in result.stderr.decode()
    assert not (tmp_path / "out" / "processed").exists()


def test_a_bad_address_is_a_usage_error(
    inputs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["batch", str(inputs), "--out", str(tmp_path / "out"), "--dask", "host:8786"]
    assert main(argv) == 2
    assert "--dask takes 'local' or a scheduler's address" in capsys.readouterr().err


def test_without_dask_the_option_says_how_to_install_it(
    inputs: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    find_spec = importlib.util.find_spec

    def hidden(name: str, *args: Any) -> Any:
        return None if name == "distributed" else find_spec(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", hidden)
    argv = ["batch", str(inputs), "--out", str(tmp_path / "out"), "--dask", "local"]
    assert main(argv) == 2
    assert "pip install 'leukofhir[dask]'" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_the_process_pool_does_not_import_dask(tmp_path: Path) -> None:
    make_inputs(tmp_path / "in", 3)
    code = (
        "import sys; from leukofhir.cli import main;"
        f" code = main(['batch', {str(tmp_path / 'in')!r}, '--out', {str(tmp_path / 'out')!r},"
        " '--min-age', '0', '--workers', '1']);"
        " assert code == 0, code; assert 'distributed' not in sys.modules"
        " and 'dask' not in sys.modules, 'dask imported'"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], env=batch_env(), capture_output=True, check=False
    )
    assert result.returncode == 0, result.stderr.decode()[-2000:]

"""Lifecycle states shared in PostgreSQL by several processes: two processes settling
interleaved reports of the same patients end with the states of one sequential fold (the
lifecycle's refold invariant: no report lost to a concurrent writer); a process killed
mid-transaction leaves the previous state and holds no lock.

Against a throw-away cluster (tests/pgcluster.py); skipped with the reason when PostgreSQL
or psycopg is not here."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from leukofhir.cli import main
from leukofhir.lifecycle.settle import patients_of, settle_message
from leukofhir.lifecycle.state import PatientState
from leukofhir.pipeline import process
from tests.conftest import ROOT
from tests.lifecycle.streams import CONTEXT, WBC, canonical, patient_ids, sequential, stream, write

psycopg = pytest.importorskip("psycopg", reason="psycopg is not installed (leukofhir[postgres])")

from leukofhir.lifecycle.pgstore import SCHEMA_VERSION, PostgresStore, migrate  # noqa: E402


def workers(url: str, *shares: list[Path], crash: bool = False) -> list[subprocess.Popen[str]]:
    """One worker process per share of files, started together once all are ready."""
    options = ["--crash"] if crash else []
    started = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.postgres.worker", url, *options, *map(str, share)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for share in shares
    ]
    for worker in started:
        assert worker.stdout is not None
        assert worker.stdout.readline() == "ready\n"
    for worker in started:
        assert worker.stdin is not None
        worker.stdin.write("go\n")
        worker.stdin.close()
    return started


def test_two_processes_settling_the_same_patients_lose_no_report(
    postgres_url: str, tmp_path: Path
) -> None:
    messages = stream()
    paths = write(tmp_path / "in", messages)
    running = workers(postgres_url, paths[0::2], paths[1::2])  # every other message each
    for worker in running:
        assert worker.wait(120) == 0
        assert worker.stdout is not None
        worker.stdout.close()
    store = PostgresStore(postgres_url)
    settled = {patient: canonical(store.load(patient)) for patient in patient_ids(messages)}
    store.close()
    expected = sequential(messages)
    assert all(len(state.reports) == len(WBC) for state in expected.values())
    assert settled == expected


def test_a_process_killed_mid_transaction_leaves_the_previous_state(
    postgres_url: str, tmp_path: Path
) -> None:
    messages = stream()
    first, later = messages[:3], messages[3]  # day 0 preliminary of each patient; P1's final
    store = PostgresStore(postgres_url)
    for data in first:
        for outcome in process(data, CONTEXT):
            with store.transaction(patients_of(outcome)):
                store.save(settle_message(outcome, store.load, CONTEXT.rule_set)[1])
    before = {patient: store.load(patient) for patient in patient_ids(messages)}
    [worker] = workers(postgres_url, write(tmp_path / "in", [later]), crash=True)
    assert worker.stdout is not None
    assert worker.stdout.readline() == "saved\n"
    assert worker.wait(30) == -9  # SIGKILL inside the transaction
    worker.stdout.close()
    started = time.monotonic()
    patient = patient_ids([later])[0]
    with store.transaction([patient]):  # its lock went with its connection
        assert store.load(patient) == before[patient]
    assert time.monotonic() - started < 10
    assert {p: store.load(p) for p in before} == before
    store.close()


def test_other_patients_do_not_wait(postgres_url: str) -> None:
    first, second = PostgresStore(postgres_url), PostgresStore(postgres_url)
    done = threading.Event()

    def other_patient() -> None:
        with second.transaction(["b"]):
            second.save({"b": PatientState(rules=("x",))})
        done.set()

    with first.transaction(["a"]):
        first.save({"a": PatientState(rules=("y",))})
        thread = threading.Thread(target=other_patient)
        thread.start()
        assert done.wait(10)  # while ``a`` is held
    thread.join()
    assert first.load("b") == PatientState(rules=("x",))
    first.close()
    second.close()


def test_the_schema_is_created_once_and_a_newer_one_is_refused(postgres_url: str) -> None:
    PostgresStore(postgres_url).close()
    with psycopg.connect(postgres_url, autocommit=True) as db:
        assert migrate(db) == SCHEMA_VERSION  # already there: nothing to do
        db.execute("UPDATE leukofhir_schema SET version = version + 1")
        with pytest.raises(RuntimeError, match="newer leukofhir"):
            migrate(db)


def test_an_unreachable_database_is_a_connection_error() -> None:
    from tests.pgcluster import free_port

    with pytest.raises(ConnectionError, match="PostgreSQL"):
        PostgresStore(f"postgresql://nobody@127.0.0.1:{free_port()}/none?connect_timeout=2")


def test_replay_with_an_unreachable_database_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    [path] = write(tmp_path / "in", stream()[:1])
    url = "postgresql://x:secret@127.0.0.1:1/none"
    assert main(["replay", "--state", url, str(path)]) == 2
    err = capsys.readouterr().err
    assert "--state: 127.0.0.1:1/none: PostgreSQL" in err
    assert "secret" not in err

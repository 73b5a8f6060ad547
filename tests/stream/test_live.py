"""End to end on a real nats-server (loopback): ``leukofhir serve --publish`` receiving
over MLLP, ``leukofhir worker`` processes killed and started again mid-stream; and a
broker that goes away under the receiver."""

from __future__ import annotations

import contextlib
import json
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from leukofhir.context import Settings
from leukofhir.lifecycle.store import MemoryStore, SqliteStore
from leukofhir.stream.settings import Envelope, wrap
from leukofhir.stream.worker import Worker
from leukofhir.transport import Delivery
from tests import natsserver
from tests.conftest import SAMPLES
from tests.lifecycle.streams import canonical, patient_ids, sequential, stream
from tests.serve.helpers import (
    TIMEOUT_PROCESS,
    environment,
    field_of,
    mllp_exchange,
    outputs,
    reap,
    sample,
    service,
)

pytestmark = pytest.mark.skipif(bool(natsserver.unavailable()), reason=natsserver.unavailable())


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[natsserver.NatsServer]:
    server = natsserver.NatsServer(tmp_path / "nats")
    server.folder.mkdir()
    server.start()
    try:
        yield server
    finally:
        server.stop()


def publishing(url: str, *more: str) -> tuple[str, ...]:
    return ("--publish", url, "--partitions", "4", "--shutdown-timeout", "5", *more)


@contextlib.contextmanager
def worker(url: str, out: Path, log: Path, *more: str) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("ab") as stderr:
        process = subprocess.Popen(
            [
                *(sys.executable, "-m", "leukofhir.cli", "--log-format", "json", "worker"),
                *("--nats", url, "--out", str(out), "--ack-wait", "1", "--batch", "4", *more),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            env=environment(),
        )
    try:
        yield process
    finally:
        reap(process)


def events(log: Path, name: str) -> list[dict[str, object]]:
    lines = log.read_text().splitlines()
    return [e for e in map(json.loads, filter(None, lines)) if e.get("event") == name]


def files(out: Path) -> list[str]:
    return [name for name in outputs(out) if not name.startswith(".metrics")]


def processed(log: Path) -> set[str]:
    return {str(e["control_id"]) for e in events(log, "message")}


def ready(log: Path, pid: int) -> bool:
    return any(e["pid"] == pid for e in events(log, "worker_ready"))


def wait_for(condition: object, what: str) -> None:
    assert callable(condition)
    deadline = time.monotonic() + TIMEOUT_PROCESS * 2
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def journal(out: Path) -> list[tuple[str, str, str, bytes]]:
    db = sqlite3.connect(out / "journal.sqlite")
    try:
        rows = db.execute("SELECT state, outcome, received, data FROM messages ORDER BY id")
        return [(str(s), str(o), str(r), bytes(d)) for s, o, r, d in rows]
    finally:
        db.close()


def reference(rows: list[tuple[str, str, str, bytes]], out: Path) -> dict[str, bytes]:
    """The outputs of one worker settling the published messages in order, in memory."""
    one = Worker(MemoryStore(), out, Settings())
    for _, _, received, data in rows:
        one.handle(Delivery("", wrap(Envelope("hl7v2", received, data)), None))
    return {name: (out / name).read_bytes() for name in outputs(out)}


def test_workers_killed_mid_stream_leave_what_one_sequential_run_leaves(
    tmp_path: Path, broker: natsserver.NatsServer
) -> None:
    messages = stream()
    out, log = tmp_path / "work", tmp_path / "worker.log"
    states = tmp_path / "states.sqlite"
    state = ("--state", str(states))
    with service(tmp_path / "serve", publishing(broker.url)) as serving:
        with worker(broker.url, out, log, *state) as first:
            for data in messages[:36]:
                assert field_of(mllp_exchange(serving.mllp, data), "MSA", 1) == "AA"
            wait_for(lambda: len(events(log, "message")) >= 12, "the first worker works")
            first.send_signal(signal.SIGKILL)
            first.wait(10)
        for data in messages[36:]:
            assert field_of(mllp_exchange(serving.mllp, data), "MSA", 1) == "AA"
        # two workers now, two partitions each; one is killed as soon as it works
        with (
            worker(broker.url, out, log, *state, "--partition", "0", "1") as a,
            worker(broker.url, out, log, *state, "--partition", "2", "3") as b,
        ):
            wait_for(lambda: ready(log, a.pid), "the worker of partitions 0 and 1 starts")
            before = len(events(log, "message"))
            wait_for(lambda: len(events(log, "message")) > before, "it works")
            a.send_signal(signal.SIGKILL)
            a.wait(10)
            done = processed(log)
            with worker(broker.url, out, log, *state, "--partition", "0", "1") as c:
                wait_for(lambda: len(processed(log)) == len(messages), "every message processed")
                for process in (b, c):
                    process.send_signal(signal.SIGTERM)
                    assert process.wait(10) == 0
        rows = journal(serving.out)
    assert done  # (some were processed before the last start)
    assert [(s, o) for s, o, _, _ in rows] == [("done", "published")] * len(messages)
    assert "Traceback" not in log.read_text()
    # every message processed, in order per patient (a repeat only of one not acknowledged)
    control = {field_of(m, "MSH", 10): p for m in messages for p in patient_ids([m])}
    seen = [str(e["control_id"]) for e in events(log, "message")]
    for patient in patient_ids(messages):
        sent = [c for c in (field_of(m, "MSH", 10) for m in messages) if control[c] == patient]
        firsts = list(dict.fromkeys(c for c in seen if control[c] == patient))
        assert firsts == sent
    # the states and the outputs are those of one worker settling the messages in order
    store = SqliteStore(states)
    assert {p: canonical(store.load(p)) for p in patient_ids(messages)} == sequential(messages)
    store.close()
    expected = reference(rows, tmp_path / "reference")
    got = {name: (out / name).read_bytes() for name in outputs(out) if name != "states.sqlite"}
    assert got.keys() == expected.keys()  # no duplicate, none missing
    assert got == expected


def test_a_broker_gone_from_the_receiver_is_ar_and_loses_nothing(
    tmp_path: Path, broker: natsserver.NatsServer
) -> None:
    first, resent, left = stream()[:3]
    options = publishing(broker.url, "--publish-timeout", "1")
    with service(tmp_path / "serve", options) as serving:
        assert field_of(mllp_exchange(serving.mllp, first), "MSA", 1) == "AA"
        broker.stop()
        for data in (resent, left):
            ack = mllp_exchange(serving.mllp, data)
            assert field_of(ack, "MSA", 1) == "AR"
            assert "NOT accepted: send it again" in field_of(ack, "ERR", 8)
        assert [s for s, *_ in journal(serving.out)] == ["done", "received", "received"]
        broker.start()
        deadline = time.monotonic() + 20
        while field_of(mllp_exchange(serving.mllp, resent), "MSA", 1) != "AA":  # as a sender does
            assert time.monotonic() < deadline, "no AA once the broker is back"
            time.sleep(0.2)
        assert "publish_failed" in serving.log.read_text()
    # ``left`` was never sent again: the next start publishes it
    with service(tmp_path / "serve", options) as serving:
        assert [(s, o) for s, o, *_ in journal(serving.out)] == [("done", "published")] * 3
    log = tmp_path / "worker.log"
    with worker(broker.url, tmp_path / "work", log) as working:
        wait_for(lambda: len(events(log, "message")) >= 3, "the worker has the three")
        time.sleep(1.5)  # (an unacknowledged or second copy would come within the ack wait)
        working.send_signal(signal.SIGTERM)
        assert working.wait(10) == 0
    done = [str(e["control_id"]) for e in events(log, "message")]
    assert sorted(done) == sorted(field_of(m, "MSH", 10) for m in (first, resent, left))


def test_what_names_no_patient_is_answered_and_written_by_the_receiver(
    tmp_path: Path, broker: natsserver.NatsServer
) -> None:
    from leukofhir.stream.jetstream import JetStreamTransport

    names = ("19-wrong-message-type-adt.hl7", "17-chemistry-no-cbc.hl7")
    plain, published = {}, {}
    with service(tmp_path / "plain") as serving:
        for name in names:
            plain[name] = field_of(mllp_exchange(serving.mllp, sample(name)), "MSA", 1)
        written = files(serving.out)
    with service(tmp_path / "serve", publishing(broker.url)) as serving:
        for name in names:
            published[name] = field_of(mllp_exchange(serving.mllp, sample(name)), "MSA", 1)
        assert files(serving.out) == written
        assert [o for _, o, *_ in journal(serving.out)] == ["rejected", "skipped"]
    assert published == plain == {names[0]: "AR", names[1]: "AA"}
    consumer = JetStreamTransport(broker.url, consume=None, create=False)
    assert consumer.receive(10, 1.0) == []  # nothing was published
    consumer.close()


def test_a_fhir_body_goes_through_the_stream_to_the_names_serve_gives(
    tmp_path: Path, broker: natsserver.NatsServer
) -> None:
    import httpx

    body = (SAMPLES / "f02-collection-report-relative-refs.json").read_bytes()
    headers = {"content-type": "application/fhir+json"}
    with service(tmp_path / "plain") as serving:
        plain = httpx.post(f"http://127.0.0.1:{serving.http}/fhir", content=body, headers=headers)
        written = files(serving.out)
    with service(tmp_path / "serve", publishing(broker.url)) as serving:
        answer = httpx.post(f"http://127.0.0.1:{serving.http}/fhir", content=body, headers=headers)
        assert files(serving.out) == []  # the worker writes
    assert (answer.status_code, plain.status_code) == (200, 200)
    log = tmp_path / "worker.log"
    with worker(broker.url, tmp_path / "work", log) as working:
        wait_for(lambda: len(events(log, "message")) == 1, "the worker has the body")
        working.send_signal(signal.SIGTERM)
        assert working.wait(10) == 0
    assert [n for n in files(tmp_path / "work") if not n.startswith((".", "states"))] == written

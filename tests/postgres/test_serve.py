"""Two ``leukofhir serve`` processes on one PostgreSQL journal (``--journal URL``), each
with its own OUT and ports, as two hosts would run them: senders spread interleaved
reports of the same patients over both and re-send across them (lost ACKs, dropped
connections); one service is SIGKILLed with messages in flight (and a process that stored
messages as received dies before it processes them) and the other service finishes them.
Checked: every message answered AA and processed once, the patients' states those of one
sequential run, and (with the test FHIR server) every document delivered once
although both services deliver.

Against a throw-away cluster (tests/pgcluster.py); skipped with the reason when PostgreSQL
or psycopg (or, for delivery, the FHIR server) is not here."""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT
from tests.lifecycle.streams import canonical, patient_ids, sequential, stream, write

pytest.importorskip("psycopg", reason="psycopg is not installed (leukofhir[postgres])")
sys.path.insert(0, str(ROOT / "benchmarks"))

from leukofhir.lifecycle.pgstore import PostgresStore
from leukofhir.serve.journal import open_journal

from serve_load import Sender, Server, control_id

DEADLINE = 120.0


def services(tmp_path: Path, url: str, *options: str) -> tuple[Server, Server]:
    return tuple(  # type: ignore[return-value]
        Server(tmp_path / name, "--workers", "1", "--journal", url, *options)
        for name in ("host-a", "host-b")
    )


def settled(url: str, messages: list[bytes]) -> None:
    """The journal has every message once, processed; the states are a sequential run's."""
    journal = open_journal(Path(), url)
    counts = journal.counts()
    journal.close()
    # a preliminary that arrives after its final is skipped: which ones depends on the order
    assert set(counts) <= {"processed", "skipped"}
    assert sum(counts.values()) == len(messages)
    store = PostgresStore(url)
    states = {patient: canonical(store.load(patient)) for patient in patient_ids(messages)}
    store.close()
    assert states == sequential(messages)


def all_aa(senders: list[Sender], messages: list[bytes]) -> None:
    assert {control_id(m) for m in messages} == {c for s in senders for c in s.acks}
    for sender in senders:  # each message's last answer is AA; none is AE
        assert all(codes[-1] == "AA" for codes in sender.acks.values()), sender.acks
        assert {c for codes in sender.acks.values() for c in codes} <= {"AA", "AR"}


def delivered(server: Server) -> float:
    text = httpx.get(f"http://127.0.0.1:{server.ports['http']}/metrics", timeout=10).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith('leukofhir_fhir_deliveries_total{result="delivered"')
    )


_HOLD = """
import sys
from datetime import UTC, datetime
from leukofhir.serve.header import content_hash, read_header
from leukofhir.serve.journal import Arrival, open_journal
from pathlib import Path
journal = open_journal(Path(), sys.argv[1])
arrivals = []
for name in sys.argv[2:]:
    data = Path(name).read_bytes()
    header = read_header(data)
    key = (header.sender, header.control_id, content_hash(data))
    arrivals.append(Arrival(*key, "hl7v2", "mllp", data))
journal.receive(arrivals, datetime.now(UTC).isoformat(timespec="seconds"), owner=journal.owner)
print("stored", flush=True)
sys.stdin.read()
"""


def hold(url: str, messages: list[bytes]) -> subprocess.Popen[str]:
    """A process that stores ``messages`` as received (its own) and waits to be killed."""
    folder = Path(tempfile.mkdtemp())
    paths = write(folder, messages)
    process = subprocess.Popen(
        [sys.executable, "-c", _HOLD, url, *map(str, paths)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    assert process.stdout.readline() == "stored\n"
    return process


def test_two_services_share_the_journal_the_states_and_the_delivery(
    postgres_url: str, tmp_path: Path
) -> None:
    from tests.fhirserver import running_server

    messages = stream() * 2  # each sent twice more: a re-send of a finished message too
    with running_server(tmp_path / "fhir") as fhir:
        first, second = services(tmp_path, postgres_url, "--fhir-base", fhir.base)
        with first, second:
            pick = random.Random(5)
            ports = (first.ports["mllp"], second.ports["mllp"])
            senders = [
                Sender(lambda: pick.choice(ports), messages[i::3], seed=i, chaos=0.05)
                for i in range(3)
            ]

            async def send() -> None:
                deadline = time.monotonic() + DEADLINE
                await asyncio.gather(*(s.run(deadline) for s in senders))

            asyncio.run(send())
            assert sum(s.reconnects for s in senders) > 3  # re-sends did cross services
            all_aa(senders, messages)
            journal = open_journal(Path(), postgres_url, outbox=True)
            assert journal.outbox is not None
            deadline = time.monotonic() + 60
            while (counts := journal.outbox.counts(time.time())).pending:
                assert time.monotonic() < deadline, counts
                time.sleep(0.2)
            assert counts.dead == 0
            assert counts.delivered > 0
            journal.close()
            # each document sent by one of the two deliverers, once
            assert delivered(first) + delivered(second) == counts.delivered
            assert min(delivered(first), delivered(second)) >= 0
            assert first.stop() == 0
            assert second.stop() == 0
    settled(postgres_url, messages[: len(messages) // 2])


def test_a_killed_services_messages_are_finished_by_the_other(
    postgres_url: str, tmp_path: Path
) -> None:
    messages = stream()
    first, second = services(tmp_path, postgres_url, "--http", "off")
    with first, second:
        victim = first.process
        assert victim is not None

        def port() -> int:  # the victim while it lives, then the other service
            return (first if victim.poll() is None else second).ports["mllp"]

        held = hold(postgres_url, messages[-6:])  # stored by a process that then dies
        senders = [Sender(port, messages[i::4], seed=10 + i) for i in range(4)]

        async def scenario() -> None:
            running = asyncio.gather(*(s.run(time.monotonic() + DEADLINE) for s in senders))
            async with asyncio.timeout(60):
                while sum(len(s.acks) for s in senders) < 8:
                    await asyncio.sleep(0.001)
            first.kill()  # SIGKILL, with the senders' next messages in its hands
            held.kill()
            held.communicate(timeout=10)  # and its pipes closed
            await running

        asyncio.run(scenario())
        all_aa(senders, messages)
        assert second.stop() == 0
    log = second.stderr.read_text()
    assert "Traceback" not in log
    settled(postgres_url, messages)

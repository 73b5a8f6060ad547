"""Load and faults against the real service (a subprocess on loopback): four senders that
disconnect mid-frame, lose ACKs and re-send; then SIGKILL under load and a restart.  The
promise checked: every message acknowledged AA has its output, and every message has
exactly one output, however often it was sent."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections import Counter
from pathlib import Path

import httpx

from leukofhir.batch.naming import safe_stem
from leukofhir.serve.journal import Journal
from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))

from serve_load import Sender, Server, control_id, generate_messages

DEADLINE = 240.0  # seconds: a stuck sender fails the test instead of hanging CI


def bundles_by_stem(out: Path) -> Counter[str]:
    return Counter(
        path.name.rsplit("_", 1)[0] for path in (out / "processed").rglob("*.r1.bundle.json")
    )


async def run_senders(senders: list[Sender]) -> None:
    deadline = time.monotonic() + DEADLINE
    await asyncio.gather(*(sender.run(deadline) for sender in senders))


def test_four_senders_with_disconnects_lost_acks_and_resends(tmp_path: Path) -> None:
    messages = generate_messages(10_000, seed=11)
    out = tmp_path / "out"
    with Server(out, "--workers", "2", "--http", "off") as server:
        senders = [
            Sender(lambda: server.ports["mllp"], messages[i::4], seed=i, chaos=0.01)
            for i in range(4)
        ]
        asyncio.run(run_senders(senders))
        assert server.stop() == 0
    assert "Traceback" not in server.stderr.read_text()
    assert sum(s.reconnects for s in senders) > 100  # the chaos did happen
    resent = sum(len(codes) - 1 for s in senders for codes in s.acks.values())
    assert resent > 50
    for sender in senders:  # every answer, first or re-sent, is AA
        assert {code for codes in sender.acks.values() for code in codes} == {"AA"}
        assert set(sender.acks) == {control_id(m) for m in sender.messages}
    expected = Counter({safe_stem(control_id(m)): 1 for m in messages})
    assert bundles_by_stem(out) == expected  # none lost, none twice
    journal = Journal(out)
    assert journal.counts() == {"processed": 10_000}
    journal.close()


def test_kill_9_under_load_then_restart_loses_no_acknowledged_message(tmp_path: Path) -> None:
    messages = generate_messages(2_000, seed=12)
    out = tmp_path / "out"
    server = Server(out, "--workers", "1", "--http", "off")
    server.start()
    senders = [Sender(lambda: server.ports["mllp"], messages[i::4], seed=100 + i) for i in range(4)]

    def acknowledged() -> set[str]:
        return {cid for s in senders for cid, codes in s.acks.items() if "AA" in codes}

    async def scenario() -> None:
        running = asyncio.gather(*(s.run(time.monotonic() + DEADLINE) for s in senders))
        for target in (400, 1_200):
            async with asyncio.timeout(60):
                while len(acknowledged()) < target:
                    await asyncio.sleep(0.005)
            await asyncio.to_thread(server.kill)
            safe = acknowledged()
            stems = set(bundles_by_stem(out))
            missing = {cid for cid in safe if safe_stem(cid) not in stems}
            assert not missing, f"{len(missing)} acknowledged messages have no output"
            await asyncio.to_thread(server.start)
        await running

    try:
        asyncio.run(scenario())
        assert server.stop() == 0
    finally:
        server.__exit__()
    expected = Counter({safe_stem(control_id(m)): 1 for m in messages})
    assert bundles_by_stem(out) == expected
    journal = Journal(out)
    assert journal.counts() == {"processed": 2_000}
    journal.close()


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(stat[1]) == pid:
                found.append(int(entry.name))
    return found


def test_a_service_process_killed_under_load_is_replaced_and_nothing_is_lost(
    tmp_path: Path,
) -> None:
    messages = generate_messages(1_200, seed=13)
    out = tmp_path / "out"
    with Server(out, "--workers", "2", "--http", "off") as server:
        assert server.process is not None
        senders = [
            Sender(lambda: server.ports["mllp"], messages[i::4], seed=200 + i) for i in range(4)
        ]

        async def scenario() -> None:
            running = asyncio.gather(*(s.run(time.monotonic() + DEADLINE) for s in senders))
            async with asyncio.timeout(60):
                while sum(len(s.acks) for s in senders) < 300:
                    await asyncio.sleep(0.005)
            assert server.process is not None
            [victim, *_] = children_of(server.process.pid)
            os.kill(victim, signal.SIGKILL)
            await running

        asyncio.run(scenario())
        assert server.stop() == 0
    log = server.stderr.read_text()
    assert '"process_died"' in log
    assert '"process_replaced"' in log
    expected = Counter({safe_stem(control_id(m)): 1 for m in messages})
    assert bundles_by_stem(out) == expected
    journal = Journal(out)
    assert journal.counts() == {"processed": 1_200}
    journal.close()


def test_metrics_add_up_over_the_service_processes(tmp_path: Path) -> None:
    messages = generate_messages(40, seed=14)
    with Server(tmp_path / "out", "--workers", "2") as server:
        senders = [Sender(lambda: server.ports["mllp"], messages[i::4], seed=i) for i in range(4)]
        asyncio.run(run_senders(senders))
        with httpx.Client(base_url=f"http://127.0.0.1:{server.ports['http']}") as http:
            text = http.get("/metrics").text
            assert http.get("/healthz").json()["status"] == "ok"
        assert server.stop() == 0
    counted = sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith('leukofhir_messages_total{channel="mllp"')
    )
    assert counted == 40
    assert "leukofhir_reply_seconds_bucket" in text

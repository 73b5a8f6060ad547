"""Live streams through NATS JetStream against the in-process service, in one run.

    python benchmarks/nats_bench.py                  # 2,000 messages per run, 3 runs
    python benchmarks/nats_bench.py --count 4000 --repeat 5

Needs nats-server (Debian package) and nats-py (``pip install '.[nats]'``); the broker is a
throw-away one on 127.0.0.1 (tests/natsserver.py, JetStream file store in a temporary
folder).  Generated 19-OBX CBC messages, a daily CBC of 200 patients.  Cases:

* ``serve``: the real ``leukofhir serve`` (1 and 2 processes) receiving over MLLP from 4
  senders, each waiting for its ACK: in-process processing (journal, lifecycle, folder);
* ``serve --publish``: the same receiver publishing to JetStream instead (the pure core
  judges, the journal records, the ACK waits for the PubAck): the receiver's share;
* ``publish round trip``: one synchronous publish of a message (its PubAck awaited) from
  the adapter, one after another;
* ``publish, 64 in flight``: publishes from one connection, 64 awaiting their PubAck at a
  time: what the broker stores when the client does not wait;
* ``worker``: ``leukofhir worker`` processes (1, then 2 with two partitions each of the 4)
  on a stream already holding the messages: from their ready line to their last message
  (start-up excluded); SQLite states, folder outputs;
* ``worker loop, no broker``: the same loop in this process, messages handed to it
  directly: what the broker costs a worker.

Reported: messages/s (and latency for the senders and the round trip) and the CPU time a
message costs the measured processes (the service's, the workers' from their ready line
on, this process's for the loop, the nats-server's for the publishes in flight: steadier
than wall clock on a shared machine), medians of ``--repeat`` runs, with the machine and
the load average before and after.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from leukofhir.context import Settings
from leukofhir.lifecycle.store import SqliteStore
from leukofhir.stream.jetstream import JetStreamTransport
from leukofhir.stream.settings import Envelope, StreamSettings, wrap
from leukofhir.stream.worker import Worker
from leukofhir.transport import Delivery
from serve_bench import mllp_run, percentile
from tests import natsserver

from serve_load import SRC, Server, generate_messages

TICKS = os.sysconf("SC_CLK_TCK")
PATIENTS = 200
PARTITIONS = 4
SENDERS = 4


def cpu(pid: int) -> float:
    """CPU seconds (user + system) of process ``pid`` and its children, as they are now."""
    total = 0.0
    with contextlib.suppress(OSError):
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        total = (int(fields[11]) + int(fields[12])) / TICKS
        for task in Path(f"/proc/{pid}/task").iterdir():
            for child in (task / "children").read_text().split():
                total += cpu(int(child))
    return total


def receiver(messages: list[bytes], options: list[str]) -> tuple[float, float, float]:
    """(messages/s, p50 ms, CPU ms a message) of ``leukofhir serve`` with ``options``, 4 MLLP
    senders."""
    with (
        tempfile.TemporaryDirectory(prefix="nats-bench-") as folder,
        Server(Path(folder) / "out", *options) as server,
    ):
        assert server.process is not None
        asyncio.run(mllp_run(server.ports["mllp"], messages[:50], 1))  # warm up
        before = cpu(server.process.pid)
        elapsed, latencies = asyncio.run(mllp_run(server.ports["mllp"], messages[50:], SENDERS))
        used = cpu(server.process.pid) - before
        server.stop()
    count = len(messages) - 50
    return count / elapsed, percentile(latencies, 0.5) * 1000, used / count * 1000


def round_trip(url: str, messages: list[bytes], stream: str) -> tuple[float, float]:
    """(median, p99) µs of one synchronous publish."""
    transport = JetStreamTransport(url, StreamSettings(stream=stream))
    times = []
    for index, data in enumerate(messages):
        started = time.perf_counter()
        transport.publish(f"p{index % PATIENTS}", data, f"rt-{index}")
        times.append(time.perf_counter() - started)
    transport.close()
    return statistics.median(times) * 1e6, percentile(times, 0.99) * 1e6


def pipelined(
    url: str, payloads: list[bytes], stream: str, broker: int, window: int = 64
) -> tuple[float, float]:
    """(messages/s, the broker's CPU µs a message) with ``window`` publishes in flight
    from one connection (``broker``: the nats-server's pid)."""
    transport = JetStreamTransport(url, StreamSettings(stream=stream))

    async def publish_all() -> float:
        room = asyncio.Semaphore(window)

        async def one(index: int, data: bytes) -> None:
            async with room:
                await transport.publish_async(f"p{index % PATIENTS}", data, f"{stream}-{index}")

        started = time.perf_counter()
        await asyncio.gather(*(one(i, d) for i, d in enumerate(payloads)))
        return len(payloads) / (time.perf_counter() - started)

    before = cpu(broker)
    rate = asyncio.run(publish_all())
    used = cpu(broker) - before
    transport.close()
    return rate, used / len(payloads) * 1e6


def envelopes(messages: list[bytes]) -> list[bytes]:
    received = datetime.now(UTC).isoformat(timespec="seconds")
    return [wrap(Envelope("hl7v2", received, data)) for data in messages]


def fill(url: str, stream: str, payloads: list[bytes], keys: list[str]) -> None:
    settings = StreamSettings(stream=stream, partitions=PARTITIONS)
    transport = JetStreamTransport(url, settings)
    for index, (key, data) in enumerate(zip(keys, payloads, strict=True)):
        transport.publish(key, data, f"{stream}-{index}")
    transport.close()


def workers(
    url: str, stream: str, groups: list[list[int]], count: int, folder: Path
) -> tuple[float, float]:
    """(messages/s, CPU ms a message) of ``leukofhir worker`` processes, each on
    ``groups[i]`` partitions (CPU from each one's ready line on)."""
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    logs = [folder / f"worker{i}.log" for i in range(len(groups))]
    processes = []
    for group, log in zip(groups, logs, strict=True):
        with log.open("wb") as stderr:
            processes.append(
                subprocess.Popen(
                    [
                        *(sys.executable, "-m", "leukofhir.cli", "--log-format", "json"),
                        *("worker", "--nats", url, "--stream", stream, "--out", str(folder)),
                        *("--state", str(folder / "states.sqlite")),
                        *("--partition", *map(str, group)),
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=stderr,
                    env=env,
                )
            )
    deadline = time.monotonic() + 600
    started: dict[int, float] = {}
    while sum(_events(log, "message") for log in logs) < count:
        if time.monotonic() > deadline or any(p.poll() is not None for p in processes):
            raise RuntimeError(f"the workers did not finish: {logs[0].read_text()[-2000:]}")
        for process, log in zip(processes, logs, strict=True):
            if process.pid not in started and _events(log, "worker_ready"):
                started[process.pid] = cpu(process.pid)
        time.sleep(0.02)
    used = sum(cpu(p.pid) - started.get(p.pid, 0.0) for p in processes)
    for process in processes:
        process.terminate()
        process.wait(30)
    ready = min(_instant(log, "worker_ready", first=True) for log in logs)
    last = max(_instant(log, "message", first=False) for log in logs)
    return count / (last - ready), used / count * 1000


def _events(log: Path, name: str) -> int:
    return log.read_text().count(f'"event":"{name}"')


def _instant(log: Path, name: str, *, first: bool) -> float:
    found = [json.loads(line) for line in log.read_text().splitlines() if f'"{name}"' in line]
    stamp = found[0 if first else -1]["timestamp"]
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def loop_alone(payloads: list[bytes], folder: Path) -> tuple[float, float]:
    """(messages/s, CPU ms a message) of the worker's loop in this process, no broker."""
    store = SqliteStore(folder / "states.sqlite")
    worker = Worker(store, folder, Settings())
    worker.handle(Delivery("", payloads[0], None))  # warm up
    started, cpu_started = time.perf_counter(), time.process_time()
    for data in payloads[1:]:
        worker.handle(Delivery("", data, None))
    elapsed, used = time.perf_counter() - started, time.process_time() - cpu_started
    store.close()
    return (len(payloads) - 1) / elapsed, used / (len(payloads) - 1) * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=2000, help="messages per run")
    parser.add_argument("--repeat", type=int, default=3, help="runs per case (median)")
    args = parser.parse_args()
    reason = natsserver.unavailable()
    if reason:
        print(f"nats_bench: {reason}", file=sys.stderr)
        return 3
    import logging

    logging.disable(logging.CRITICAL)
    from leukofhir.logs import ERROR, configure

    configure(json=True, level=ERROR)  # the in-process worker loop logs nothing
    messages = generate_messages(args.count + 50, seed=7, patients=PATIENTS)
    cpu = platform.processor() or platform.machine()
    with open("/proc/cpuinfo") as info:
        cpu = next((line.split(":", 1)[1].strip() for line in info if "model name" in line), cpu)
    print(f"machine: {cpu}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())} at the start")
    print(f"{args.count} messages ({PATIENTS} patients) per run, median of {args.repeat} runs")
    results: dict[str, list[tuple[float, ...]]] = {}
    with natsserver.nats_server() as broker:
        for run in range(args.repeat):
            for name, options in (
                ("serve, 1 process", ["--workers", "1"]),
                ("serve, 2 processes", ["--workers", "2"]),
                (
                    "serve --publish, 1 process",
                    ["--workers", "1", "--publish", broker.url, "--stream", f"SERVE{run}"],
                ),
            ):
                results.setdefault(name, []).append(receiver(messages, options))
            rt = round_trip(broker.url, envelopes(messages[: args.count]), f"RT{run}")
            results.setdefault("publish round trip", []).append(rt)
            assert broker.process is not None
            piped = pipelined(
                broker.url, envelopes(messages[: args.count]), f"PIPE{run}", broker.process.pid
            )
            results.setdefault("publish, 64 in flight", []).append(piped)
            payloads = envelopes(messages[: args.count])
            keys = [f"p{i % PATIENTS}" for i in range(args.count)]
            for label, groups in (("worker x1", [[0, 1, 2, 3]]), ("worker x2", [[0, 1], [2, 3]])):
                stream = f"W{run}{len(groups)}"
                fill(broker.url, stream, payloads, keys)
                with tempfile.TemporaryDirectory(prefix="nats-bench-") as folder:
                    done = workers(broker.url, stream, groups, args.count, Path(folder))
                results.setdefault(label, []).append(done)
            with tempfile.TemporaryDirectory(prefix="nats-bench-") as folder:
                results.setdefault("worker loop, no broker", []).append(
                    loop_alone(payloads, Path(folder))
                )
    print(f"{'case':<28} {'msg/s':>8} {'p50':>10} {'CPU/msg':>10}")
    for name, runs in results.items():
        median = [statistics.median(r[i] for r in runs) for i in range(len(runs[0]))]
        if name == "publish round trip":
            extra = f"{median[0]:>7,.0f} µs  (p99 {median[1]:,.0f} µs)"
            print(f"{name:<28} {1e6 / median[0]:>8,.0f} {extra}")
        elif name == "publish, 64 in flight":
            print(f"{name:<28} {median[0]:>8,.0f} {'':>10} {median[1]:>7,.0f} µs (nats-server)")
        elif len(median) == 3:
            print(f"{name:<28} {median[0]:>8,.0f} {median[1]:>7.2f} ms {median[2]:>7.2f} ms")
        else:
            print(f"{name:<28} {median[0]:>8,.0f} {'':>10} {median[1]:>7.2f} ms")
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())} at the end")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""ACK latency and throughput of ``leukofhir serve`` (MLLP with 1 and 4 senders, HTTP), with
the journal in SQLite or in PostgreSQL.

    python benchmarks/serve_bench.py                       # 4,000 messages per run, 3 runs
    python benchmarks/serve_bench.py --count 10000 --repeat 5 --workers 2
    python benchmarks/serve_bench.py --workers 1 --cases mllp:1,mllp:4 \
        --setups sqlite:1,postgresql:1,postgresql:2       # journal:services

Each run starts the real service as a subprocess on loopback with a fresh OUT (journal
synced on every commit, folder sink) and sends ``--count`` generated CBC messages
(19 OBX each):

* MLLP: N senders, each on its own connection, each waiting for the ACK before sending
  the next message (what an integration engine does); latency = send → whole ACK read.
* HTTP: N concurrent clients POSTing to ``/hl7v2`` (httpx, keep-alive); latency = request
  → response.

``--setups``: ``sqlite:1`` is one service with OUT/journal.sqlite (the default);
``postgresql:N`` is N services (each ``--workers`` processes, its own OUT and ports, as N
hosts would run them) on one ``--journal postgresql://`` database of a throw-away cluster
on 127.0.0.1 (tests/pgcluster.py, fsync on, as the SQLite journal is synced), the MLLP
senders spread over them.  Every run gets a fresh journal.

Reported: throughput (messages/s, wall clock from the first send to the last ACK) and
the p50/p99 latency, the median of ``--repeat`` runs; the load average before and after.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx

from serve_load import Sender, Server, generate_messages


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def mllp_run(
    ports: list[int], messages: list[bytes], senders: int
) -> tuple[float, list[float]]:
    group = [
        Sender(lambda i=i: ports[i % len(ports)], messages[i::senders], seed=i)  # type: ignore[misc]
        for i in range(senders)
    ]
    started = time.perf_counter()
    deadline = time.monotonic() + 600
    await asyncio.gather(*(s.run(deadline) for s in group))
    elapsed = time.perf_counter() - started
    if sum(len(s.acks) for s in group) != len(messages):
        raise RuntimeError("not every message was acknowledged")
    return elapsed, [x for s in group for x in s.latencies]


async def http_run(
    ports: list[int], messages: list[bytes], clients: int
) -> tuple[float, list[float]]:
    latencies: list[float] = []
    url = f"http://127.0.0.1:{ports[0]}/hl7v2"  # one service
    headers = {"content-type": "x-application/hl7-v2+er7"}

    async def client(part: list[bytes], http: httpx.AsyncClient) -> None:
        for message in part:
            begun = time.perf_counter()
            response = await http.post(url, content=message, headers=headers)
            latencies.append(time.perf_counter() - begun)
            if response.status_code != 200 or b"MSA|AA|" not in response.content:
                raise RuntimeError(f"HTTP {response.status_code}: {response.content[:200]!r}")

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(limits=limits, timeout=30) as http:
        started = time.perf_counter()
        await asyncio.gather(*(client(messages[i::clients], http) for i in range(clients)))
        elapsed = time.perf_counter() - started
    return elapsed, latencies


def one(
    kind: str, clients: int, messages: list[bytes], options: list[str], services: int = 1
) -> tuple[float, float, float]:
    with contextlib.ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="serve-bench-")))
        servers = [
            stack.enter_context(Server(folder / f"out{i}", *options)) for i in range(services)
        ]
        ports = [server.ports[kind] for server in servers]
        warm = messages[:50]  # start-up costs out of the measurement
        run = mllp_run if kind == "mllp" else http_run
        asyncio.run(run(ports, warm, len(ports)))
        elapsed, latencies = asyncio.run(run(ports, messages[50:], clients))
        for server in servers:
            server.stop()
    count = len(messages) - 50
    return count / elapsed, percentile(latencies, 0.5), percentile(latencies, 0.99)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=4000, help="messages per run")
    parser.add_argument("--repeat", type=int, default=3, help="runs per case (median)")
    parser.add_argument("--workers", default=str(os.cpu_count() or 1), help="service workers")
    parser.add_argument("--cases", default="mllp:1,mllp:4,http:1,http:4", help="kind:clients,...")
    parser.add_argument(
        "--serve-option",
        action="append",
        default=[],
        metavar="OPTION",
        help="passed to leukofhir serve (e.g. --serve-option=--journal-sync=normal)",
    )
    parser.add_argument(
        "--setups",
        default="sqlite:1",
        help="journal:services,... (sqlite:1, postgresql:1, postgresql:2)",
    )
    args = parser.parse_args()
    options = ["--workers", args.workers, *args.serve_option]
    messages = generate_messages(args.count + 50, seed=5)
    print(
        f"machine: {model()}, {os.cpu_count()} cores, Python {platform.python_version()};"
        f" leukofhir serve {' '.join(options)}; {args.count} messages per run, median of"
        f" {args.repeat}; load average {load()}"
    )
    print(f"{'setup':<14} {'case':<10} {'msg/s':>8} {'p50 ms':>8} {'p99 ms':>8}")
    with contextlib.ExitStack() as stack:
        for setup in args.setups.split(","):
            journal, services = setup.split(":")
            journals = stack.enter_context(journal_urls()) if journal != "sqlite" else None
            for case in args.cases.split(","):
                kind, clients = case.split(":")
                runs = []
                for _ in range(args.repeat):
                    where = ["--journal", journals()] if journals is not None else []
                    runs.append(one(kind, int(clients), messages, options + where, int(services)))
                rate = statistics.median(r[0] for r in runs)
                p50 = statistics.median(r[1] for r in runs) * 1000
                p99 = statistics.median(r[2] for r in runs) * 1000
                print(f"{setup:<14} {case:<10} {rate:>8,.0f} {p50:>8.2f} {p99:>8.2f}", flush=True)
    print(f"load average {load()}")
    return 0


_created = itertools.count()


@contextlib.contextmanager
def journal_urls() -> Iterator[Callable[[], str]]:
    """A throw-away cluster (fsync on); each call a new database in it."""
    from tests import pgcluster

    reason = pgcluster.unavailable()
    if reason:
        raise SystemExit(f"no PostgreSQL here: {reason}")
    with pgcluster.cluster(durable=True) as running:
        yield lambda: running.create(f"journal{next(_created)}")


def model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def load() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


if __name__ == "__main__":
    raise SystemExit(main())

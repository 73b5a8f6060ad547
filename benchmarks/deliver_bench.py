"""Documents per second delivered to ../shared/tools/fhir-server, next to what the server
itself absorbs, measured in the same run.

    python benchmarks/deliver_bench.py                    # 100 documents, 5 runs
    python benchmarks/deliver_bench.py --count 200 --repeat 3

The documents are the transaction Bundles of ``--count`` generated CBC messages (19 OBX:
Patient, 19 Observations, derived counts, DiagnosticReport, Flags, Provenance; all
conditional creates but the Provenance).  One server for the whole run, emptied
(``$reset``) before every measurement, so each starts from the same empty store (the test
server's searches scan its store, so it slows down as it fills: in one run here the 6th
block of 50 documents went 3.5 times slower than the first); the modes take turns within
each run:

* ``server, sequential``: the server's own capacity: one plain keep-alive
  ``httpx.Client`` POSTing the documents one after the other, no leukofhir code;
* ``server, 4 threads``: four such clients in threads (can the server absorb more than one
  at a time?);
* ``deliverer, concurrency 1`` and ``4``: the outbox (SQLite, synced commits) and the
  asyncio deliverer, from queued to marked delivered.

Reported: the median documents/s of ``--repeat`` runs (and the range), each deliverer's
median as a share of the sequential capacity, and the client's own CPU time per document
(this process: a figure the other load on a shared machine disturbs less than the rates).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import orjson  # noqa: E402

from leukofhir.context import Context  # noqa: E402
from leukofhir.delivery import (  # noqa: E402
    Deliverer,
    Document,
    FhirServer,
    SqliteOutbox,
    TransactionClient,
    patient_key,
)
from leukofhir.emit.jsonio import dumps  # noqa: E402
from leukofhir.logs import configure  # noqa: E402
from leukofhir.pipeline import process  # noqa: E402
from leukofhir.rules import load_rule_set  # noqa: E402
from leukofhir.terminology import load_terminology  # noqa: E402
from tests.fhirserver import FhirServer as ServerProcess  # noqa: E402

from generate import generate_messages  # noqa: E402

HEADERS = {"Content-Type": "application/fhir+json"}


def bundles(count: int) -> list[bytes]:
    context = Context(
        now=datetime(2026, 1, 1, tzinfo=UTC),
        terminology=load_terminology(),
        rule_set=load_rule_set(),
    )
    out: list[bytes] = []
    for message in generate_messages(count, seed=11):
        for outcome in process(message, context):
            out.extend(dumps(d) for d in outcome.documents() if d["resourceType"] == "Bundle")
    return out


def sequential(base: str, docs: list[bytes]) -> float:
    with httpx.Client(timeout=60) as client:
        started = time.perf_counter()
        for data in docs:
            client.post(base, content=data, headers=HEADERS).raise_for_status()
        return time.perf_counter() - started


def threads(base: str, docs: list[bytes], workers: int = 4) -> float:
    def send(part: list[bytes]) -> None:
        with httpx.Client(timeout=60) as client:
            for data in part:
                client.post(base, content=data, headers=HEADERS).raise_for_status()

    started = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(send, [docs[i::workers] for i in range(workers)]))
    return time.perf_counter() - started


def deliverer(base: str, docs: list[bytes], concurrency: int) -> float:
    with tempfile.TemporaryDirectory(prefix="deliver-bench-") as folder:
        outbox = SqliteOutbox.open(Path(folder) / "outbox.sqlite")
        outbox.enqueue(
            [
                Document(f"d{n}", patient_key(orjson.loads(d)) or f"d{n}", n, d)
                for n, d in enumerate(docs)
            ],
            time.time(),
        )

        async def run() -> float:
            server = FhirServer(base, connections=concurrency, timeout=60)
            async with TransactionClient(server) as client:
                started = time.perf_counter()
                summary = await Deliverer(outbox, client.post, concurrency=concurrency).run()
                elapsed = time.perf_counter() - started
            if summary.delivered != len(docs):
                raise RuntimeError(f"delivered {summary.delivered} of {len(docs)}")
            return elapsed

        try:  # one JSON log line per document, as in production, written to /dev/null
            with open(os.devnull, "w") as sink, contextlib.redirect_stderr(sink):
                return asyncio.run(run())
        finally:
            outbox.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=100, help="messages (one Bundle each)")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    configure(json=True)
    docs = bundles(args.count)
    entries = statistics.median(d.count(b'"request":') for d in docs)
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores,"
        f" Python {platform.python_version()}, {platform.system()} {platform.release()};"
        f" load average at start {os.getloadavg()[0]:.2f}"
    )
    print(f"{len(docs)} transaction Bundles, median {entries:.0f} entries, "
          f"{statistics.median(map(len, docs)) / 1024:.0f} KiB")  # fmt: skip
    modes: dict[str, Callable[[str], float]] = {
        "server, sequential (plain httpx)": lambda base: sequential(base, docs),
        "server, 4 threads (plain httpx)": lambda base: threads(base, docs),
        "deliverer, concurrency 1": lambda base: deliverer(base, docs, 1),
        "deliverer, concurrency 4": lambda base: deliverer(base, docs, 4),
    }
    rates: dict[str, list[float]] = {name: [] for name in modes}
    cpu: dict[str, list[float]] = {name: [] for name in modes}
    with tempfile.TemporaryDirectory(prefix="deliver-bench-srv-") as folder:
        server = ServerProcess(Path(folder))
        server.start()
        try:
            for run in range(args.repeat):
                for name, mode in modes.items():
                    server.reset()
                    before = time.process_time()
                    rate = len(docs) / mode(server.base)
                    used = (time.process_time() - before) / len(docs) * 1000
                    rates[name].append(rate)
                    cpu[name].append(used)
                    print(f"  run {run + 1} {name}: {rate:.1f} documents/s, client CPU"
                          f" {used:.2f} ms/document", flush=True)  # fmt: skip
        finally:
            server.stop()
    capacity = statistics.median(rates["server, sequential (plain httpx)"])
    print(f"\nmedians of {args.repeat} runs:")
    for name, values in rates.items():
        median = statistics.median(values)
        share = f"  ({100 * median / capacity:.0f} % of sequential)" if "deliverer" in name else ""
        print(f"  {name:34} {median:6.1f} documents/s  "
              f"(range {min(values):.1f}-{max(values):.1f}), client CPU"
              f" {statistics.median(cpu[name]):.2f} ms/document{share}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

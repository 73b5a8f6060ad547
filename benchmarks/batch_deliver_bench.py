"""``leukofhir batch --fhir-base`` against ../shared/tools/fhir-server, next to the server's
own sequential capacity measured in the same run, on the same documents.

    python benchmarks/batch_deliver_bench.py                  # 300 messages, 3 runs
    python benchmarks/batch_deliver_bench.py --count 500 --patients 50 --repeat 5

Input: ``--count`` generated CBC messages, one per file, daily CBCs of ``--patients``
patients (so one patient's documents must go in order).  Every mode starts from an empty
server (``$reset``; its searches slow down as its store fills) and a fresh OUT; the modes
take turns within each run:

* ``server, sequential``: the server's capacity: the OUT Bundle files of a batch POSTed one
  after the other in input order by one plain keep-alive httpx client (no leukofhir code);
* ``batch --fhir-base, concurrency N``: the whole batch as a subprocess, from start to exit
  (scan, process, write, ledger, deliver): delivery runs while processing goes on;
* ``batch, then deliver``: the batch queueing only (``--fhir-queue-only``), then
  ``leukofhir deliver OUT`` (delivery after the pass), the two times added.

Reported: documents/s for each (the number of Bundles over the wall time), the median of
``--repeat`` runs, and each as a share of the sequential capacity.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT))

from deliver_bench import sequential  # noqa: E402
from tests.fhirserver import FhirServer  # noqa: E402

from generate import generate_messages  # noqa: E402

NOW = "2026-01-01T00:00:00+00:00"


def leukofhir(*argv: str) -> float:
    """Run the command; its wall time (it must succeed)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "leukofhir.cli", "--log-format", "json", *argv],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=False,
    )
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"leukofhir {argv[0]} exited {done.returncode}")
    return elapsed


def batch(source: Path, out: Path, *extra: str) -> float:
    return leukofhir(
        "batch", str(source), "--out", str(out), "--min-age", "0", "--now", NOW, *extra
    )


def bundles(out: Path) -> list[bytes]:
    with contextlib.closing(sqlite3.connect(out / "ledger.sqlite")) as db:
        rows = db.execute("SELECT outputs FROM messages ORDER BY source, offset").fetchall()
    names = [n for (o,) in rows for n in json.loads(o) if n.endswith(".bundle.json")]
    return [(out / name).read_bytes() for name in names]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=300, help="messages (one Bundle each)")
    parser.add_argument("--patients", type=int, default=30)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2, help="batch --workers")
    args = parser.parse_args()
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores,"
        f" Python {platform.python_version()}, {platform.system()} {platform.release()};"
        f" load average at start {os.getloadavg()[0]:.2f}"
    )
    with tempfile.TemporaryDirectory(prefix="batch-deliver-bench-") as folder:
        root = Path(folder)
        source = root / "in"
        source.mkdir()
        for n, message in enumerate(generate_messages(args.count, 5, patients=args.patients)):
            path = source / f"m{n:06d}.hl7"
            path.write_bytes(message)
            os.utime(path, (1_700_000_000 + n, 1_700_000_000 + n))
        batch(source, root / "reference", "--workers", str(args.workers))
        docs = bundles(root / "reference")
        print(f"{args.count} messages of {args.patients} patients: {len(docs)} Bundles")
        server = FhirServer(root / "srv")
        server.start()
        workers = ("--workers", str(args.workers))

        def fresh(name: str) -> Path:
            out = root / name
            shutil.rmtree(out, ignore_errors=True)
            return out

        def with_delivery(concurrency: int) -> Callable[[], float]:
            return lambda: batch(
                source,
                fresh("out"),
                *workers,
                "--fhir-base",
                server.base,
                "--fhir-concurrency",
                str(concurrency),
            )

        def after_the_pass() -> float:
            out = fresh("out")
            queue = ("--fhir-base", server.base, "--fhir-queue-only")
            return batch(source, out, *workers, *queue) + leukofhir("deliver", str(out))

        modes: dict[str, Callable[[], float]] = {
            "server, sequential (plain httpx)": lambda: sequential(server.base, docs),
            "batch --fhir-base, concurrency 1": with_delivery(1),
            "batch --fhir-base, concurrency 4": with_delivery(4),
            "batch, then deliver (concurrency 4)": after_the_pass,
        }
        rates: dict[str, list[float]] = {name: [] for name in modes}
        try:
            for run in range(args.repeat):
                for name, mode in modes.items():
                    server.reset()
                    load = os.getloadavg()[0]
                    rate = len(docs) / mode()
                    counts = server.counts()
                    if counts.get("Provenance") != len(docs):
                        raise RuntimeError(f"{name}: the server holds {counts}")
                    rates[name].append(rate)
                    print(f"  run {run + 1} {name}: {rate:.1f} documents/s (load {load:.1f})",
                          flush=True)  # fmt: skip
        finally:
            server.stop()
    capacity = statistics.median(rates["server, sequential (plain httpx)"])
    print(f"\nmedians of {args.repeat} runs:")
    for name, values in rates.items():
        median = statistics.median(values)
        print(f"  {name:36} {median:6.1f} documents/s (range {min(values):.1f}-"
              f"{max(values):.1f})  {100 * median / capacity:.0f} % of sequential")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

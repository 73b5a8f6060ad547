"""What the batch's parent spends per message, part by part, in this process.

    python benchmarks/settle_bench.py                          # 2,000 messages, medians of 5
    python benchmarks/settle_bench.py --count 5000 --patients 100 --runs 3

The parent of ``leukofhir batch`` records what its workers return, in input order: it
settles each message's reports against the patients' states, writes their Bundles, and
records the rows and the new states in its ledger (:mod:`leukofhir.batch.runner`).  With
``--workers 1`` it also does the workers' part; with more, its share bounds the rate
whatever the number of workers (see ``dask_bench.py``).

Generated 19-OBX CBC messages (``benchmarks/generate.py``), one a file, are processed once
by a batch worker (:class:`leukofhir.batch.work.Worker`: read, process, render) into the
results the parent gets.  Then timed, CPU time of this thread, medians of ``--runs``:

  unpickle  the results as a pool worker hands them over (``pickle.loads``)
  settle    the lifecycle settle in input order against the ledger's states, and the
            ledger's rows and states, committed 2,000 rows at a time (Bundles not written)
  write     the Bundles and outcomes written as the batch writes them (a temporary file
            renamed into place) into a fresh folder beside the inputs; wall time too (the
            kernel's share of creating a file depends on what else the disk is doing)

for two streams: a new patient each message (as ``batch_bench.py``), and the daily CBCs of
``--patients`` patients (message ``i`` is day ``i // patients`` of patient ``i % patients``).
"""

from __future__ import annotations

import argparse
import os
import pickle
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from leukofhir.batch.ledger import Ledger
from leukofhir.batch.settle import settle
from leukofhir.batch.store import Store
from leukofhir.batch.work import FileResult, FileTask, Worker, WorkerConfig
from leukofhir.rules import RuleSet, load_rule_set

from generate import generate_messages

RECORDED = "2026-01-01T00:00:00+00:00"


def worked(base: Path, messages: list[bytes]) -> list[tuple[FileTask, FileResult]]:
    """Each message a file, through a batch worker: what the parent gets back."""
    source = base / "in"
    source.mkdir()
    worker = Worker(WorkerConfig(out=str(base / "worker-out")))
    out = []
    for n, data in enumerate(messages):
        path = source / f"m{n:07d}.hl7"
        path.write_bytes(data)
        task = FileTask(str(path), path.name, RECORDED)
        out.append((task, worker.run(task)))
    return out


def record(
    ledger: Ledger, results: list[tuple[FileTask, FileResult]], rule_set: RuleSet
) -> list[tuple[str, bytes]]:
    """What the parent does with the results, in order (as ``_Runner._record``), but for
    writing the files: returned instead."""
    files: list[tuple[str, bytes]] = []
    for task, result in results:
        rows = list(result.rows)
        for position, message in result.unsettled:
            done = settle(message, rows[position], ledger.load_state, rule_set)
            rows[position] = done.row
            files.extend(done.files)
            ledger.save_states(done.states)
        ledger.record_file(
            result.source, result.size, result.mtime_ns, rows, recorded=task.recorded
        )
    ledger.flush()
    return files


def settled(
    folder: Path, results: list[tuple[FileTask, FileResult]], rule_set: RuleSet
) -> tuple[float, list[tuple[str, bytes]]]:
    """CPU seconds of the settle and the ledger, and the files they leave to write."""
    ledger = Ledger(folder)
    cpu = time.thread_time()
    files = record(ledger, results, rule_set)
    cpu = time.thread_time() - cpu
    ledger.close()
    return cpu, files


def written(folder: Path, files: list[tuple[str, bytes]]) -> tuple[float, float]:
    """CPU and wall seconds of writing ``files`` as the batch does."""
    store = Store(folder)
    cpu, wall = time.thread_time(), time.perf_counter()
    for name, data in files:
        store.write(name, data)
    return time.thread_time() - cpu, time.perf_counter() - wall


def unpickled(results: list[tuple[FileTask, FileResult]]) -> float:
    blobs = [pickle.dumps([result]) for _, result in results]
    cpu = time.thread_time()
    for blob in blobs:
        pickle.loads(blob)
    return time.thread_time() - cpu


def measure(name: str, messages: list[bytes], runs: int, rule_set: RuleSet) -> None:
    base = Path(tempfile.mkdtemp(prefix="settle-bench-", dir=os.environ.get("TMPDIR")))
    try:
        results = worked(base, messages)
        times: dict[str, list[float]] = {"unpickle": [], "settle": [], "write": [], "wall": []}
        for n in range(runs):
            times["unpickle"].append(unpickled(results))
            ledger = base / f"ledger-{n}"
            ledger.mkdir()
            cpu, files = settled(ledger, results, rule_set)
            times["settle"].append(cpu)
            cpu, wall = written(base / f"out-{n}", files)
            times["write"].append(cpu)
            times["wall"].append(wall)
            shutil.rmtree(ledger)
            shutil.rmtree(base / f"out-{n}")
        count = len(messages)
        us = {k: statistics.median(v) / count * 1e6 for k, v in times.items()}
        print(
            f"{name:34} unpickle {us['unpickle']:5.0f}  settle+ledger {us['settle']:5.0f}"
            f"  write {us['write']:5.0f} (wall {us['wall']:5.0f})  µs/message"
            f"  [settle runs: {' '.join(f'{t / count * 1e6:.0f}' for t in times['settle'])}]"
        )
    finally:
        shutil.rmtree(base)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--patients", type=int, default=50, help="of the daily stream")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores,"
        f" Python {platform.python_version()}, {args.count} messages,"
        f" medians of {args.runs}; load {os.getloadavg()[0]:.1f}"
    )
    rule_set = load_rule_set()
    measure("a new patient each", generate_messages(args.count, args.seed), args.runs, rule_set)
    daily = generate_messages(args.count, args.seed, patients=args.patients)
    measure(f"{args.patients} patients' daily CBCs", daily, args.runs, rule_set)
    print(f"load {os.getloadavg()[0]:.1f} after")


if __name__ == "__main__":
    main()

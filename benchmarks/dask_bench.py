"""``leukofhir batch --dask local`` against the process pool, and a model of 10 and 100 machines.

    python benchmarks/dask_bench.py                       # 6,000 messages, 1 per file, 3 runs
    python benchmarks/dask_bench.py --count 20000 --repeat 5 --per-file 10

Part 1, end to end: the same generated files (``benchmarks/generate.py``) through
``leukofhir batch IN --out OUT --workers N`` (the process pool; ``N = 1``: the parent alone)
and ``... --workers N --dask local`` (a LocalCluster of N processes on 127.0.0.1), each as a
subprocess into a fresh OUT, the configurations interleaved, medians of ``--repeat`` runs.
Wall time includes everything (start-up, the cluster's too, scan, processing, ledger,
summary).  The machine's load (1-minute average) and the CPU the rest of the machine used
during each run are printed: this machine's 2 cores are shared.

Part 2, the costs the model is built from, each measured in this process:

- ``worker``: CPU seconds per message of :func:`leukofhir.batch.work.run_chunk` (read,
  split, process, render; what a Dask worker does), one process, no parent.
- ``parent``: CPU seconds per message of the parent's main thread in a pool run (scan,
  ledger, the lifecycle settle in input order, Bundle writes, commits, summary), and of
  ``_record`` alone (settle + ledger rows of each file): the part that cannot be spread.
- ``task``: wall seconds per task of the Dask round trip (submit, schedule, run a no-op on
  a chunk's worth of arguments, send back a chunk's worth of results) through the
  LocalCluster, 200 tasks in flight, and the bytes a message's result costs on the wire.

The model (printed) is a min() of capacities: workers ``machines × cores / worker``,
the parent ``1 / parent``, the scheduler ``messages per task / task``, the parent's
network link ``link bytes/s / result bytes``.
"""

from __future__ import annotations

import argparse
import logging
import os
import pickle
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from batch_bench import Run, run, write_inputs

from generate import generate_messages

NOW = "2026-01-01T00:00:00+00:00"


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load {one:.1f} (5 min {five:.1f})"


def fixed_cost(base: Path, repeat: int) -> None:
    """Wall time of a batch over an empty IN: start-up and close, the cluster's too."""
    empty = base / "empty"
    empty.mkdir()
    for kind, extra in (("pool", []), ("dask", ["--dask", "local"])):
        seconds = []
        for _ in range(repeat):
            r = run(empty, base / "out-empty", 2, extra)
            seconds.append(r.seconds)
            shutil.rmtree(base / "out-empty")
        print(f"empty IN, {kind} workers 2: {statistics.median(seconds):.2f} s ({load()})")


def end_to_end(source: Path, base: Path, count: int, repeat: int, workers: list[int]) -> None:
    configs = [(kind, n) for n in workers for kind in ("pool", "dask")]
    runs: dict[tuple[str, int], list[Run]] = {}
    loads: dict[tuple[str, int], list[float]] = {}
    for _ in range(repeat):  # interleaved, so that a noisy moment hits every configuration
        for kind, n in configs:
            out = base / f"out-{kind}-{n}"
            extra = ["--dask", "local"] if kind == "dask" else []
            before = os.getloadavg()[0]
            r = run(source, out, n, extra)
            runs.setdefault((kind, n), []).append(r)
            loads.setdefault((kind, n), []).append(before)
            print(
                f"{kind} workers {n}: {r.seconds:7.2f} s {count / r.seconds:7,.0f} msg/s"
                f"  cpu {r.cpu:6.2f} s (others {r.other:6.2f} s)  {load()}  exit {r.code}",
                flush=True,
            )
            shutil.rmtree(out)
    print()
    for (kind, n), done in runs.items():
        seconds = statistics.median(r.seconds for r in done)
        print(
            f"median of {len(done)}: {kind:4} workers {n}: {count / seconds:7,.0f} msg/s"
            f"  ({seconds:.2f} s; others' CPU {statistics.median(r.other for r in done):.1f} s,"
            f" load before {statistics.median(loads[kind, n]):.1f})"
        )


def _cpu(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.thread_time()
    value = fn()
    return time.thread_time() - start, value


def worker_cost(source: Path, scratch: Path) -> tuple[float, float]:
    """CPU seconds a message in run_chunk, and pickled result bytes a message."""
    from leukofhir.batch.work import FileTask, WorkerConfig, run_chunk

    files = sorted(source.rglob("*.hl7"))
    tasks = [FileTask(str(p), str(p.relative_to(source)), NOW) for p in files]
    config = WorkerConfig(out=str(scratch))
    run_chunk(config, tasks[:5])  # warm
    seconds, results = _cpu(lambda: run_chunk(config, tasks))
    messages = sum(len(r.rows) for r in results)
    size = len(pickle.dumps(results, protocol=5))
    return seconds / messages, size / messages


def parent_cost(source: Path, out: Path, workers: int) -> tuple[float, float, float]:
    """The parent's main-thread CPU a message in a pool run, of ``_record`` (settle and
    ledger rows) and of ``_settle`` (the lifecycle, Bundles and their writes) in it."""
    from leukofhir.batch import runner
    from leukofhir.batch.runner import BatchOptions, run_batch
    from leukofhir.logs import configure, get_logger

    configure(json=True)
    logging.disable(logging.CRITICAL)
    spent = {"_record": 0.0, "_settle": 0.0}
    originals = {name: getattr(runner._Runner, name) for name in spent}

    def timer(name: str) -> Callable[..., Any]:
        def timed(self: Any, *args: Any) -> Any:
            start = time.thread_time()
            value = originals[name](self, *args)
            spent[name] += time.thread_time() - start
            return value

        return timed

    for name in spent:
        setattr(runner._Runner, name, timer(name))
    try:
        options = BatchOptions(source, out, workers=workers, min_age=0, now=_now(), progress=False)
        seconds, result = _cpu(lambda: run_batch(options, get_logger("bench")))
    finally:
        for name, original in originals.items():
            setattr(runner._Runner, name, original)
        logging.disable(logging.NOTSET)
    messages = int(result.summary["messages"]["total"])
    return seconds / messages, spent["_record"] / messages, spent["_settle"] / messages


def _now() -> Any:
    from datetime import datetime

    return datetime.fromisoformat(NOW)


def _noop(config: Any, tasks: list[Any], size: int) -> bytes:
    return os.urandom(size)  # incompressible (Dask does not compress by default anyway)


def task_cost(source: Path, files_per_task: int, result_bytes: int) -> tuple[float, float]:
    """Wall seconds a task of the Dask round trip, 200 tasks in flight on 2 workers: with a
    one-byte result (the scheduling), and with a chunk's worth of result bytes."""
    from distributed import Client, LocalCluster

    from leukofhir.batch.work import FileTask, WorkerConfig

    files = sorted(source.rglob("*.hl7"))[:files_per_task]
    tasks = [FileTask(str(p), str(p.relative_to(source)), NOW) for p in files]
    config = WorkerConfig(out=str(source))
    with (
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            host="127.0.0.1",
            dashboard_address=None,
            silence_logs=logging.ERROR,
        ) as cluster,
        Client(cluster) as client,
    ):
        client.submit(_noop, config, tasks, 1, pure=False).result()
        count = 200
        seconds = []
        for size in (1, result_bytes):
            start = time.perf_counter()
            futures = [client.submit(_noop, config, tasks, size, pure=False) for _ in range(count)]
            for future in futures:
                future.result()
            seconds.append((time.perf_counter() - start) / count)
        return seconds[0], seconds[1]


def model(worker: float, parent: float, record: float, settle: float, task: float,
          per_task: int, result_bytes: float, cores: int) -> None:  # fmt: skip
    link = 117e6  # bytes/s: 1 Gbit/s Ethernet, the parent's link, all results cross it
    print(
        f"\nmodel inputs: worker {worker * 1e3:.2f} ms CPU/msg; parent {parent * 1e3:.2f} ms"
        f" CPU/msg (of which settle + ledger {record * 1e3:.2f} ms); Dask task round trip"
        f" {task * 1e3:.2f} ms for {per_task} msgs; {result_bytes:,.0f} result bytes/msg;"
        f" {cores} cores a machine; a 1 Gbit/s link"
    )
    for moved, title in ((False, "as built"), (True, "settle on the workers (not built)")):
        print(f"{title}:")
        for machines in (1, 10, 100):
            capacities = {  # moved: the workers settle too, the parent keeps the rest
                "workers": machines * cores / (worker + settle * moved),
                "parent": 1 / (parent - settle * moved),
                "scheduler": per_task / task,
                "parent's link": link / result_bytes,
            }
            bottleneck = min(capacities, key=lambda k: capacities[k])
            listed = ", ".join(f"{k} {v:,.0f}" for k, v in capacities.items())
            print(
                f"{machines:>5} machines: {capacities[bottleneck]:7,.0f} msg/s, bound by"
                f" {bottleneck} ({listed} msg/s);"
                f" 100 M messages in {1e8 / capacities[bottleneck] / 3600:,.1f} h"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=6_000)
    parser.add_argument("--per-file", type=int, default=1)
    parser.add_argument("--workers", default="1,2", help="worker counts, comma-separated")
    parser.add_argument("--repeat", type=int, default=3, help="runs per configuration (median)")
    parser.add_argument("--cores", type=int, default=8, help="cores a machine in the model")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--skip-runs", action="store_true", help="the costs and model only")
    args = parser.parse_args()
    print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores,"
        f" Python {platform.python_version()}, {args.count} messages,"
        f" {args.per_file} a file; {load()}"
    )
    base = Path(tempfile.mkdtemp(prefix="dask-bench-"))
    try:
        source = base / "in"
        write_inputs(source, generate_messages(args.count, args.seed), args.per_file)
        if not args.skip_runs:
            workers = [int(x) for x in args.workers.split(",")]
            fixed_cost(base, args.repeat)
            end_to_end(source, base, args.count, args.repeat, workers)
        print(f"\ncosts ({load()}):")
        worker, result_bytes = worker_cost(source, base / "scratch")
        print(f"worker: {worker * 1e3:.2f} ms CPU/msg, {result_bytes:,.0f} result bytes/msg")
        parent, record, settle = parent_cost(source, base / "parent", 2)
        print(
            f"parent: {parent * 1e3:.2f} ms CPU/msg; _record {record * 1e3:.2f} ms/msg, of"
            f" which _settle {settle * 1e3:.2f} ms (the rest: ledger rows and states)"
        )
        from leukofhir.batch.runner import BatchOptions

        options = BatchOptions(source, base)
        per_task = options.dask_files_per_task * args.per_file
        task, loaded = task_cost(source, options.dask_files_per_task, int(result_bytes * per_task))
        print(
            f"task: {task * 1e3:.2f} ms a round trip ({per_task} msgs a task);"
            f" {loaded * 1e3:.2f} ms with its {result_bytes * per_task / 1e6:.1f} MB of results"
            " over loopback"
        )
        print(f"({load()})")
        model(worker, parent, record, settle, task, per_task, result_bytes, args.cores)
    finally:
        shutil.rmtree(base)


if __name__ == "__main__":
    main()

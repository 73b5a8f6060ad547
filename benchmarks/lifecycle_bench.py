"""What the results lifecycle costs: per message, and per patient in a state store.

    python benchmarks/lifecycle_bench.py                       # 300 patients x 40 daily CBCs
    python benchmarks/lifecycle_bench.py --patients 1000 --days 20 --runs 5

Generated 19-OBX CBC messages (benchmarks/generate.py), a daily CBC per patient, in day
order.  Timed, each the median of --runs runs over the same messages (the three take turns;
  wall and CPU time of the process: CPU time is what a shared machine blurs less):
  core       process() and the Bundles as JSON bytes, each report as if the patient had no
             history (what the pure core gives alone)
  memory     the same, settled against the patients' states in a MemoryStore (replay)
  sqlite     the same with a SqliteStore (replay --state FILE): a committed transaction
             per message
  ledger     the same against a batch ledger's states (batch): committed with the rows,
             2,000 messages a transaction
Then the size of the states: bytes per patient (encoded), after --days reports each (the
window keeps at most the latest 32 reports whole), extrapolated to 1,000,000 patients,
and the SQLite file's size.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from leukofhir.batch.ledger import Ledger
from leukofhir.context import Context
from leukofhir.emit.jsonio import dumps
from leukofhir.lifecycle.settle import settle_message
from leukofhir.lifecycle.state import WINDOW, encode_state
from leukofhir.lifecycle.store import MemoryStore, SqliteStore, StateStore
from leukofhir.pipeline import process
from leukofhir.rules import load_rule_set
from leukofhir.terminology import load_terminology

from generate import generate_messages

COMMIT_ROWS = 2000  # the batch ledger's rows a transaction (Ledger's default)


def run_core(messages: list[bytes], context: Context) -> None:
    for data in messages:
        for outcome in process(data, context):
            for document in outcome.documents():
                dumps(document)


def run_settled(messages: list[bytes], context: Context, store: StateStore) -> None:
    for data in messages:
        for outcome in process(data, context):
            settled, states = settle_message(outcome, store.load, context.rule_set)
            if states:
                store.save(states)
            for document in settled.documents():
                dumps(document)


def run_ledger(messages: list[bytes], context: Context, ledger: Ledger) -> None:
    for n, data in enumerate(messages, 1):
        for outcome in process(data, context):
            settled, states = settle_message(outcome, ledger.load_state, context.rule_set)
            ledger.save_states(states)
            for document in settled.documents():
                dumps(document)
        if n % COMMIT_ROWS == 0:
            ledger.flush()
    ledger.flush()


def timed(work: Callable[[], None]) -> tuple[float, float]:
    """Wall and CPU seconds of one run (CPU time is what a loaded, shared machine blurs less)."""
    wall, cpu = time.perf_counter(), time.process_time()
    work()
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--patients", type=int, default=300)
    parser.add_argument("--days", type=int, default=40)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    count = args.patients * args.days
    messages = generate_messages(count, args.seed, patients=args.patients)
    context = Context(
        now=datetime(2026, 1, 1, tzinfo=UTC),
        terminology=load_terminology(),
        rule_set=load_rule_set(),
    )
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores,")
    print(f"  Python {platform.python_version()}; {args.patients} patients x {args.days} days")
    print(f"  = {count} messages; medians of {args.runs} runs")

    def sqlite_run() -> None:
        with tempfile.TemporaryDirectory() as folder:
            store = SqliteStore(Path(folder) / "state.sqlite")
            run_settled(messages, context, store)
            store.close()

    def ledger_run() -> None:
        with tempfile.TemporaryDirectory() as folder:
            ledger = Ledger(Path(folder))
            run_ledger(messages, context, ledger)
            ledger.close()

    modes: dict[str, Callable[[], None]] = {
        "core": lambda: run_core(messages, context),
        "memory": lambda: run_settled(messages, context, MemoryStore()),
        "sqlite": sqlite_run,
        "ledger": ledger_run,
    }
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in modes}
    load = os.getloadavg()[0]
    for _ in range(args.runs):  # the modes take turns, so a busy moment blurs all of them
        for name, work in modes.items():
            times[name].append(timed(work))
    print(f"  load average {load:.1f} before, {os.getloadavg()[0]:.1f} after")
    print(f"{'':8} {'µs/message':>11} {'CPU µs':>8} {'messages/s':>11} {'lifecycle CPU µs':>17}")
    core_cpu = statistics.median(cpu for _, cpu in times["core"])
    for name, runs in times.items():
        wall = statistics.median(wall for wall, _ in runs)
        cpu = statistics.median(cpu for _, cpu in runs)
        extra = "" if name == "core" else f"{(cpu - core_cpu) / count * 1e6:17.0f}"
        per_message = f"{wall / count * 1e6:11.0f} {cpu / count * 1e6:8.0f}"
        print(f"{name:8} {per_message} {count / wall:11.0f} {extra}")

    store = MemoryStore()
    run_settled(messages, context, store)
    sizes = sorted(len(encode_state(state)) for state in store.states())
    mean = statistics.mean(sizes)
    print(f"state per patient after {args.days} reports (window {WINDOW}):")
    print(f"  mean {mean:,.0f} B, p95 {sizes[int(len(sizes) * 0.95) - 1]:,} B, max {sizes[-1]:,} B")
    print(f"  per 1,000,000 patients: {mean * 1e6 / 2**30:.2f} GiB encoded")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "state.sqlite"
        sqlite_store = SqliteStore(path)
        run_settled(messages, context, sqlite_store)
        patients, stored = sqlite_store.size()
        sqlite_store.close()
        print(
            f"  stored (zlib): {stored / patients:,.0f} B per patient;"
            f" SQLite file {path.stat().st_size / patients:,.0f} B per patient"
            f" ({path.stat().st_size * 1e6 / patients / 2**30:.2f} GiB per 1,000,000)"
        )


if __name__ == "__main__":
    main()

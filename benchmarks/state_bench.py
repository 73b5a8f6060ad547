"""What a state store adds per message: settling a message against its patients' states in
memory, in SQLite and in PostgreSQL, one transaction per message as ``replay --state``
does (load, fold, save, commit).

    python benchmarks/state_bench.py                   # 200 patients x 15 daily CBCs, 3 runs
    python benchmarks/state_bench.py --patients 500 --days 20 --runs 5

Generated 19-OBX CBC messages (benchmarks/generate.py) are processed once (the pure core
is not timed); each run settles all of them in day order against a new, empty store:
  memory          MemoryStore (nothing to commit)
  sqlite          SqliteStore, WAL, synchronous=NORMAL (BEGIN IMMEDIATE per message)
  postgres        PostgresStore on a throw-away cluster on 127.0.0.1 (tests/pgcluster.py),
                  fsync on, synchronous_commit on: a commit waits for the WAL flush
  postgres-async  the same database with synchronous_commit=off for the connection (a
                  crash of the server may lose the last commits, never corrupts)
  round trips     two ``SELECT 1`` per message on one connection: the floor of the
                  store's two round trips, on this machine as loaded as it is
Then, for PostgreSQL, the median per message of each part of the transaction: BEGIN, the
locks and the read (one round trip); the fold and the queued upsert; the COMMIT.
Medians of --runs, the runs of the stores taking turns; the machine's load average is
printed before and after (the numbers are only as quiet as the machine was).  PostgreSQL
needs Debian's ``postgresql`` package and psycopg; without them its rows say why not.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from leukofhir.context import Context
from leukofhir.lifecycle.settle import patients_of, settle_message
from leukofhir.lifecycle.store import MemoryStore, SqliteStore, StateStore
from leukofhir.pipeline import MessageOutcome, process
from leukofhir.rules import load_rule_set
from leukofhir.terminology import load_terminology
from tests import pgcluster

from generate import generate_messages

ASYNC = "?options=-csynchronous_commit%3Doff"  # for this connection only


def settle_all(outcomes: list[MessageOutcome], store: StateStore, context: Context) -> None:
    for outcome in outcomes:
        with store.transaction(patients_of(outcome)):
            _, states = settle_message(outcome, store.load, context.rule_set)
            if states:
                store.save(states)


def timed(
    outcomes: list[MessageOutcome], context: Context, open_store: Callable[[], StateStore]
) -> Callable[[], float]:
    def run() -> float:
        store = open_store()
        start = time.perf_counter()
        settle_all(outcomes, store, context)
        seconds = time.perf_counter() - start
        store.close()
        return seconds

    return run


def phases(outcomes: list[MessageOutcome], context: Context, store: StateStore) -> list[float]:
    """Median µs of (begin, locks and read), (fold and save), (commit) per message."""
    parts: list[list[float]] = [[], [], []]
    for outcome in outcomes:
        start = time.perf_counter()
        held = store.transaction(patients_of(outcome))
        held.__enter__()
        entered = time.perf_counter()
        _, states = settle_message(outcome, store.load, context.rule_set)
        store.save(states)
        folded = time.perf_counter()
        held.__exit__(None, None, None)
        done = time.perf_counter()
        for part, seconds in zip(
            parts, (entered - start, folded - entered, done - folded), strict=True
        ):
            part.append(seconds * 1e6)
    return [statistics.median(part) for part in parts]


def postgres_stores(
    running: pgcluster.Cluster, name: str, options: str
) -> Callable[[], StateStore]:
    """Opens a PostgresStore on a new database of ``running`` each call."""
    from leukofhir.lifecycle.pgstore import PostgresStore

    count = iter(range(1_000_000))
    return lambda: PostgresStore(running.create(f"{name.replace('-', '_')}{next(count)}") + options)


def round_trips(url: str, count: int) -> Callable[[], float]:
    def run() -> float:
        import psycopg

        with psycopg.connect(url, autocommit=True) as db:
            start = time.perf_counter()
            for _ in range(2 * count):
                db.execute("SELECT 1").fetchone()
            return time.perf_counter() - start

    return run


@contextmanager
def sqlite_files() -> Iterator[Callable[[], StateStore]]:
    with tempfile.TemporaryDirectory() as folder:
        count = iter(range(1_000_000))
        yield lambda: SqliteStore(Path(folder) / f"state{next(count)}.sqlite")


def load() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--patients", type=int, default=200)
    parser.add_argument("--days", type=int, default=15)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    count = args.patients * args.days
    context = Context(
        now=datetime(2026, 1, 1, tzinfo=UTC),
        terminology=load_terminology(),
        rule_set=load_rule_set(),
    )
    messages = generate_messages(count, args.seed, patients=args.patients)
    outcomes = [o for data in messages for o in process(data, context)]
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python")
    print(f"  {platform.python_version()}; load average {load()} (1, 5, 15 min) at the start")
    print(f"  {args.patients} patients x {args.days} days = {count} messages; medians of")
    print(f"  {args.runs} runs; settle + store only (the core's processing is not timed)")
    runners: dict[str, Callable[[], float]] = {}
    skipped: dict[str, str] = {}
    parts: dict[str, list[float]] = {}
    with ExitStack() as stack:
        runners["memory"] = timed(outcomes, context, MemoryStore)
        runners["sqlite"] = timed(outcomes, context, stack.enter_context(sqlite_files()))
        reason = pgcluster.unavailable()
        if reason:
            skipped = dict.fromkeys(("postgres", "postgres-async", "round trips"), reason)
        else:
            running = stack.enter_context(pgcluster.cluster(durable=True))
            for name, options in (("postgres", ""), ("postgres-async", ASYNC)):
                opener = postgres_stores(running, name, options)
                runners[name] = timed(outcomes, context, opener)
                store = opener()
                parts[name] = phases(outcomes, context, store)
                store.close()
            runners["round trips"] = round_trips(running.url(), count)
        # the runs of every store take turns, so that each sees the machine's load alike
        times: dict[str, list[float]] = {name: [] for name in runners}
        for _ in range(args.runs):
            for name, run in runners.items():
                times[name].append(run())
    results: dict[str, float | str] = {n: statistics.median(t) for n, t in times.items()}
    results.update(skipped)
    print(f"{'':15} {'µs/message':>11} {'messages/s':>11} {'store µs':>9}")
    memory = results["memory"]
    assert isinstance(memory, float)
    for name, seconds in results.items():
        if isinstance(seconds, str):
            print(f"{name:15} not measured: {seconds}")
            continue
        extra = (
            "" if name in ("memory", "round trips") else f"{(seconds - memory) / count * 1e6:9.0f}"
        )
        print(f"{name:15} {seconds / count * 1e6:11.0f} {count / seconds:11.0f} {extra}")
    if parts:
        print(f"{'':15} {'BEGIN+locks+read':>17} {'fold+save':>10} {'COMMIT':>7}   (µs, median)")
        for name, (begin, fold, commit) in parts.items():
            print(f"{name:15} {begin:17.0f} {fold:10.0f} {commit:7.0f}")
    print(f"load average {load()} at the end")


if __name__ == "__main__":
    main()

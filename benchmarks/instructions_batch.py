"""Instructions per message of the batch, counted by callgrind: what the load of a shared
machine does not change, so that two versions can be compared exactly.

    python benchmarks/instructions_batch.py                   # both parts, 300 messages
    python benchmarks/instructions_batch.py --part settle --count 300 --patients 50
    python benchmarks/instructions_batch.py --src ../main/src  # another checkout's code

Needs ``valgrind``.  Generated 19-OBX CBC messages (``benchmarks/generate.py``), one a
file; each part runs twice under ``valgrind --tool=callgrind`` (with the messages and
without them) and the difference is divided by the number of messages, so start-up and
imports cancel out:

  batch   a ``--workers 1`` batch in this process (scan, read, process, render, settle,
          write, ledger, summary), a new patient each message; the kernel's work (creating
          files) is not counted
  settle  the parent's settle and ledger alone (no core, no file writes): the results a
          batch worker returns for each message, settled in input order against the
          ledger's states, its rows and states committed; a new patient each message, and
          (``--patients``) daily CBCs of that many patients
"""

from __future__ import annotations

import argparse
import os
import pickle
import re
import shutil
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from batch_bench import write_inputs

from generate import generate_messages

RECORDED = "2026-01-01T00:00:00+00:00"


def child(part: str, where: Path, count: int) -> None:
    """What callgrind counts: ``count`` messages of ``part`` (0: only the start-up)."""
    if part == "work":  # not counted: what a batch worker returns, for the settle part
        from leukofhir.batch.work import FileTask, Worker, WorkerConfig

        worker = Worker(WorkerConfig(out=str(where / "worker-out")))
        tasks = [FileTask(str(p), p.name, RECORDED) for p in sorted((where / "in").rglob("*"))]
        with (where / "results.pickle").open("wb") as file:
            pickle.dump([(t, worker.run(t)) for t in tasks if Path(t.path).is_file()], file)
        return
    if part == "batch":
        from leukofhir.batch.runner import BatchOptions, run_batch
        from leukofhir.logs import Logger

        source = where / ("in" if count else "empty")
        source.mkdir(exist_ok=True)
        out = where / "out"
        now = datetime(2026, 1, 1, tzinfo=UTC)
        run_batch(BatchOptions(source, out, workers=1, now=now, progress=False), Logger("x"))
        shutil.rmtree(out)
        return
    from leukofhir.batch.ledger import Ledger
    from leukofhir.rules import load_rule_set
    from settle_bench import record

    rule_set = load_rule_set()
    with (where / "results.pickle").open("rb") as file:
        results = pickle.load(file)[:count]
    ledger_folder = where / "ledger"
    ledger_folder.mkdir()
    ledger = Ledger(ledger_folder)
    record(ledger, results, rule_set)
    ledger.close()
    shutil.rmtree(ledger_folder)


def counted(part: str, where: Path, count: int, env: dict[str, str]) -> int:
    argv = [
        "valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
        sys.executable, __file__, "--child", part, str(where), str(count),
    ]  # fmt: skip
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=True)
    found = re.search(r"Collected : (\d+)", done.stderr)
    if found is None:
        raise SystemExit(f"no count from callgrind:\n{done.stderr[-2000:]}")
    return int(found.group(1))


def prepare(where: Path, messages: list[bytes], part: str, env: dict[str, str]) -> None:
    write_inputs(where / "in", messages, 1)
    if part == "settle":  # the worker's results, made outside callgrind (by the same code)
        argv = [sys.executable, __file__, "--child", "work", str(where), "0"]
        subprocess.run(argv, env=env, check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--part", choices=["batch", "settle", "both"], default="both")
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument("--patients", type=int, default=50, help="the settle part's daily CBCs")
    parser.add_argument("--src", type=Path, help="the leukofhir sources to count (PYTHONPATH)")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        part, where, count = args.child
        child(part, Path(where), int(count))
        return
    env = dict(os.environ)
    if args.src is not None:
        env["PYTHONPATH"] = str(args.src.resolve())
    runs = [("batch", "a new patient each", 0)] if args.part in ("batch", "both") else []
    if args.part in ("settle", "both"):
        runs += [("settle", "a new patient each", 0)]
        runs += [("settle", f"{args.patients} patients' daily CBCs", args.patients)]
    for part, stream, patients in runs:
        where = Path(tempfile.mkdtemp(prefix="instructions-"))
        try:
            prepare(where, generate_messages(args.count, 1, patients=patients), part, env)
            per_message = (
                counted(part, where, args.count, env) - counted(part, where, 0, env)
            ) / args.count
            print(f"{part:6} {stream:28} {per_message:12,.0f} instructions a message", flush=True)
        finally:
            shutil.rmtree(where)


if __name__ == "__main__":
    main()

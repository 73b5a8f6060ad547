"""Throughput of leukofhir against the straightforward pipeline, on generated CBC messages.

    python benchmarks/bench.py                # 1,000 messages, 5 runs, medians
    python benchmarks/bench.py --count 5000 --runs 7 --baseline-count 50

Stages timed, each over the same generated messages (19 OBX each):
  reader    split_messages + parse_message (our ER7 tokenizer)
  pipeline  process(): parse → terminology → rules → Bundle dicts → JSON bytes (orjson)
  baseline  hl7apy parse + fhir.resources R4B models + model_dump_json (benchmarks/baseline.py),
            run on --baseline-count messages (it is slow) and compared per message.
  hl7apy    hl7apy.parser.parse_message alone (TOLERANT, find_groups=True), --baseline-count msgs
  python-hl7  hl7.parse alone (a test dependency; skipped when not installed)
Reports the median of --runs runs, and the machine.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from leukofhir.context import Context
from leukofhir.emit.jsonio import dumps
from leukofhir.ingest.er7 import parse_message
from leukofhir.ingest.framing import split_messages
from leukofhir.pipeline import process
from leukofhir.rules import load_rule_set
from leukofhir.terminology import load_terminology

from baseline import baseline_pipeline
from generate import generate_messages


def time_runs(work: Callable[[], int], runs: int) -> tuple[float, int]:
    """Median seconds of ``runs`` calls of ``work`` (which returns how many messages it did)."""
    durations = []
    done = 0
    for _ in range(runs):
        start = time.perf_counter()
        done = work()
        durations.append(time.perf_counter() - start)
    return statistics.median(durations), done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--baseline-count", type=int, default=100)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    messages = generate_messages(args.count, args.seed)
    stream = b"".join(messages)
    context = Context(
        now=datetime(2026, 1, 1, tzinfo=UTC),
        terminology=load_terminology(),
        rule_set=load_rule_set(),
    )

    def reader() -> int:
        return sum(1 for raw in split_messages(stream) if parse_message(raw.data))

    def pipeline() -> int:
        count = 0
        for outcome in process(stream, context):
            for document in outcome.documents():
                dumps(document)
            count += 1
        return count

    sample = messages[: args.baseline_count]
    texts = [m.decode("utf-8") for m in sample]

    def baseline() -> int:
        for message in sample:
            baseline_pipeline(message)
        return len(sample)

    def hl7apy_parse() -> int:
        from hl7apy.consts import VALIDATION_LEVEL
        from hl7apy.parser import parse_message as hl7apy_parse_message

        for text in texts:
            hl7apy_parse_message(text, validation_level=VALIDATION_LEVEL.TOLERANT, find_groups=True)
        return len(texts)

    def python_hl7_parse() -> int:
        import hl7

        for text in messages:
            hl7.parse(text.decode("utf-8"))
        return len(messages)

    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores,"
        f" Python {platform.python_version()}, {platform.system()} {platform.release()}"
    )
    print(f"messages: {args.count} generated CBC ORU^R01 (19 OBX), median of {args.runs} runs")
    print(f"{'stage':<11} {'messages':>9} {'median s':>9} {'msg/s':>9} {'µs/msg':>9}")
    results = {}
    stages: list[tuple[str, Callable[[], int], int]] = [
        ("reader", reader, args.runs),
        ("pipeline", pipeline, args.runs),
        ("baseline", baseline, max(1, args.runs // 2)),
        ("hl7apy", hl7apy_parse, max(1, args.runs // 2)),
    ]
    if importlib.util.find_spec("hl7") is not None:
        stages.append(("python-hl7", python_hl7_parse, args.runs))
    for name, work, runs in stages:
        seconds, done = time_runs(work, runs)
        per_message = seconds / done
        results[name] = per_message
        print(
            f"{name:<11} {done:>9} {seconds:>9.3f} {1 / per_message:>9.0f}"
            f" {per_message * 1e6:>9.1f}"
        )
    print(f"pipeline speed-up over baseline: {results['baseline'] / results['pipeline']:.0f}x")


if __name__ == "__main__":
    main()

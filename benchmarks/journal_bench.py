"""Disk use of the service's journal and the cost of its retention.

    python benchmarks/journal_bench.py                  # 10,000 messages
    python benchmarks/journal_bench.py --count 50000

The service's engine (``Intake``, folder sink, journal synced as by default) in this
process, in a temporary folder, takes ``--count`` generated CBC messages (19 OBX, about
2.4 KB each) one after the other, as MLLP would hand them over.  Then:

* bytes per message: the journal file (after a checkpoint) over the number of messages;
* one retention pass over every row (``prune``, 500 rows per transaction): the time per
  transaction, and the file size after it (unchanged: the pages are free, not returned);
* ``--count`` new messages again: the file size after them, i.e. whether the freed pages
  were reused (the steady state of a journal under retention);
* the largest the write-ahead log grew.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from leukofhir.context import Settings
from leukofhir.logs import configure
from leukofhir.serve.intake import Intake
from leukofhir.serve.journal import JOURNAL_NAME, Journal
from leukofhir.serve.sink import FolderSink

from generate import generate_messages


async def feed(intake: Intake, messages: list[bytes], wal: Path) -> int:
    """Every message through the engine; returns the largest WAL size seen."""
    largest = 0
    for number, message in enumerate(messages):
        reply = await (await intake.submit(message)).reply
        if reply.code != "AA":
            raise RuntimeError(f"{reply.code}: {reply.body[:200]!r}")
        if number % 500 == 0:
            largest = max(largest, wal.stat().st_size if wal.exists() else 0)
    return largest


def size(path: Path) -> tuple[int, int]:
    """(file bytes after a checkpoint, free pages)."""
    db = sqlite3.connect(path)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    free = int(db.execute("PRAGMA freelist_count").fetchone()[0])
    db.close()
    return path.stat().st_size, free


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=10_000, help="messages per round")
    args = parser.parse_args()
    configure(json=True, level=logging.WARNING)  # one line per message would be measured too
    first = generate_messages(args.count, seed=21)
    second = [m.replace(b"|G0", b"|H0", 1) for m in generate_messages(args.count, seed=22)]
    average = sum(map(len, first)) / len(first)
    with tempfile.TemporaryDirectory(prefix="journal-bench-") as folder:
        out = Path(folder)
        path, wal = out / JOURNAL_NAME, out / (JOURNAL_NAME + "-wal")
        intake = Intake(Journal(out), FolderSink(out), Settings())
        started = time.perf_counter()
        wal_peak = asyncio.run(feed(intake, first, wal))
        elapsed = time.perf_counter() - started
        filled, _ = size(path)
        per_message = filled / args.count
        print(
            f"{args.count:,} messages ({average:,.0f} bytes each on average) in {elapsed:.1f} s:"
            f" journal {filled / 2**20:.1f} MiB, {per_message:,.0f} bytes per message"
        )

        journal = Journal(out)
        cutoff = (datetime.now(UTC) + timedelta(days=1)).isoformat(timespec="seconds")
        times = []
        while True:
            begun = time.perf_counter()
            pruned = journal.prune(cutoff, 500)
            times.append(time.perf_counter() - begun)
            if pruned < 500:
                break
        journal.close()
        after_prune, free = size(path)
        print(
            f"prune: {len(times)} transactions of up to 500 rows, median"
            f" {statistics.median(times) * 1000:.1f} ms, longest {max(times) * 1000:.1f} ms;"
            f" file {after_prune / 2**20:.1f} MiB with {free:,} free pages"
        )

        started = time.perf_counter()
        wal_peak = max(wal_peak, asyncio.run(feed(intake, second, wal)))
        refilled, free = size(path)
        print(
            f"{args.count:,} new messages after the prune: file {refilled / 2**20:.1f} MiB"
            f" ({(refilled - filled) / filled:+.1%} against the first round), {free:,} free"
            f" pages; write-ahead log at most {wal_peak / 2**20:.1f} MiB"
        )
        asyncio.run(intake.close(1.0))
        print(f"(cores: {os.cpu_count()}; Python {sys.version.split()[0]})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

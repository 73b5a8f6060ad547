"""Background upkeep of a running service, done by one of its processes (the first; the
only one with ``--workers 1``), every :data:`UPKEEP_EVERY` seconds:

* messages put back by ``leukofhir journal OUT --retry ID`` (received, nobody's) are
  processed, so a running service picks them up without a restart or a re-send;
* journal retention: ``done`` rows finished longer ago than ``--journal-retention`` are
  deleted, :data:`PRUNE_BATCH` per transaction (the writer lock is held for milliseconds,
  and the event loop serves connections between batches); so are the outbox's documents
  delivered (or abandoned) longer ago.  Nothing else is ever pruned: never a document
  pending or dead.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from leukofhir.logs import get_logger
from leukofhir.serve.intake import Intake
from leukofhir.serve.journal import Journal

__all__ = ["PRUNE_BATCH", "UPKEEP_EVERY", "keep_up", "prune", "prune_outbox"]

log = get_logger("leukofhir.serve")

UPKEEP_EVERY = 10.0  # seconds
PRUNE_BATCH = 500  # rows per transaction: about 10 ms (benchmarks/journal_bench.py)
NOBODY = 0  # the owner of a message put back by ``journal --retry``


async def keep_up(
    intake: Intake,
    retention: float,
    *,
    every: float = UPKEEP_EVERY,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> None:
    """Run until cancelled.  ``retention``: seconds a done message is kept (0: forever)."""
    while True:
        await asyncio.sleep(every)
        try:
            intake.recover([NOBODY])
            if retention > 0:
                before = clock() - timedelta(seconds=retention)
                await prune(intake.journal, before)
                await prune_outbox(intake.journal, before)
        except Exception as exc:  # the journal is busy or failing: try again next time
            log.error("upkeep_failed", error=type(exc).__name__)


async def prune(journal: Journal, before: datetime, batch: int = PRUNE_BATCH) -> int:
    """Delete the done messages finished before ``before``, ``batch`` at a time, yielding to
    the event loop between transactions; returns how many."""
    cutoff = before.astimezone(UTC).isoformat(timespec="seconds")
    total = 0
    while True:
        count = journal.prune(cutoff, batch)
        total += count
        if count < batch:
            break
        await asyncio.sleep(0)
    if total:
        log.info("journal_pruned", messages=total, finished_before=cutoff)
    return total


async def prune_outbox(journal: Journal, before: datetime, batch: int = PRUNE_BATCH) -> int:
    """Forget the outbox's documents delivered (or abandoned) before ``before``."""
    if journal.outbox is None:
        return 0
    total = 0
    while True:
        count = journal.outbox.prune(before.timestamp(), batch)
        total += count
        if count < batch:
            break
        await asyncio.sleep(0)
    if total:
        log.info("outbox_pruned", documents=total)
    return total

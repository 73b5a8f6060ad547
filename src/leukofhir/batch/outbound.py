"""The batch's side of delivery to a FHIR server (``batch --fhir-base``).

* Every Bundle the parent settles is queued in the ledger's outbox (its tables in
  ``ledger.sqlite``) in the SAME transaction as its message's row and
  the patients' new states: key = its output name (``processed/hh/….r1.bundle.json``),
  ordering key = a hash of the patient as the lifecycle knows it, ``seq`` = input order.
  A document is therefore durable, and its output file in place, before anything sends it.
* While processing goes on, a deliverer in a thread of its own
  (:class:`~leukofhir.delivery.background.BackgroundDelivery`, its own connection and event
  loop) sends what is committed, woken after each commit.  When delivering, the parent
  commits after each batch of results it records rather than every 2,000 rows or second,
  so that the deliverer gets documents early and its own marks never wait long for the
  ledger's write lock.
* At the end of the run the batch waits until nothing is left to try (all delivered, dead
  or held behind a dead letter), or until a signal: then the attempts in flight finish and
  the rest stays pending for the next run or ``leukofhir deliver OUT``.
* Dead letters: ``OUT/dead/<name>.bundle.json`` + ``.outcome.json``, listed in
  ``summary.json``.  401/403 stops delivery and the batch (exit 3), pending kept.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from leukofhir.delivery.background import BackgroundDelivery, Totals
from leukofhir.delivery.command import remember_base
from leukofhir.delivery.keys import facts_key
from leukofhir.delivery.lock import DeliveryLock
from leukofhir.delivery.options import DeliveryOptions
from leukofhir.delivery.outbox import Document, SqliteOutbox

if TYPE_CHECKING:
    from leukofhir.stopping import StopFlag

__all__ = ["DEAD_FOLDER", "BatchDelivery", "delivery_section"]

DEAD_FOLDER = "dead"
DEAD_LISTED = 100  # dead letters named in summary.json


class BatchDelivery:
    def __init__(
        self,
        connection: sqlite3.Connection,
        database: Path,
        out: Path,
        options: DeliveryOptions,
        *,
        durable: bool,
        send: bool = True,
    ) -> None:
        """``connection``: the ledger's, with no transaction open (creating the tables
        commits).  ``send`` False (``--fhir-queue-only``): queue only, ``leukofhir deliver
        OUT`` sends them.  Raises :class:`~leukofhir.delivery.lock.DeliveryBusyError` when
        another process delivers from OUT."""
        self.sending = send
        self.lock = DeliveryLock(out)
        if send:
            self.lock.acquire()
        self.options = options
        self.outbox = SqliteOutbox(connection)
        remember_base(connection, options.base)
        self.out = out
        (last,) = connection.execute("SELECT COALESCE(MAX(seq), 0) FROM outbox").fetchone()
        self._seq = int(last)
        self._staged = 0  # since the last commit
        self.background = BackgroundDelivery(
            database, options, dead_letters=out / DEAD_FOLDER, durable=durable
        )

    def start(self) -> None:
        if self.sending:
            self.background.start()

    def stage(self, bundles: Sequence[tuple[str, str, bytes]]) -> int:
        """Queue (output name, lifecycle patient or "", bytes) in the caller's open
        transaction of the same connection; how many rows it wrote."""
        documents = []
        for name, patient, data in bundles:
            self._seq += 1
            key = facts_key(patient) if patient else name  # no patient: a line of its own
            documents.append(Document(name, key, self._seq, data))
        changed = self.outbox.stage(documents, time.time())
        self._staged += changed
        return changed

    def committed(self) -> None:
        """The ledger committed: what it staged may go."""
        if self._staged and self.sending:
            self._staged = 0
            self.background.wake()

    def problem(self) -> str:
        """Why the batch must stop for delivery ("" when it need not)."""
        if self.background.error is not None:
            return f"delivery failed: {type(self.background.error).__name__}"
        stopped = self.background.stopped
        if stopped is not None:
            return (
                f"delivery stopped: {stopped.reason}; documents kept pending (fix the token or"
                " certificate, then run the batch again or leukofhir deliver OUT)"
            )
        return ""

    def finish(self, interrupted: StopFlag, *, wait: bool) -> Totals:
        """``wait``: until nothing is left to try (or ``interrupted``); else stop now."""
        if not self.sending:
            return self.background.totals
        try:
            if wait:
                return self.background.finish(interrupted.is_set)
            self.background.stop()
            return self.background.totals
        finally:
            self.lock.release()

    def progress(self) -> tuple[int, int]:
        """(documents delivered by this run, attempts that failed and will be retried)."""
        totals = self.background.totals
        snapshot = self.background.stats.snapshot()
        return snapshot.by_verdict.get("delivered", 0), totals.retried

    def section(self) -> dict[str, Any]:
        return delivery_section(
            self.outbox, self.options, self.background.stats.snapshot().by_verdict, self.problem()
        )


def delivery_section(
    outbox: SqliteOutbox,
    options: DeliveryOptions | None,
    this_run: dict[str, int],
    stopped: str,
) -> dict[str, Any]:
    """``summary.json``'s ``delivery``: the outbox's counts, this run's attempts by
    verdict, the dead letters (keys, statuses and reasons: no patient data)."""
    letters = outbox.dead_letters()
    return {
        "server": options.base if options is not None else "",
        "profile": options.profile.name if options is not None else "",
        "documents": outbox.counts(time.time()).report(),
        "this_run": dict(sorted(this_run.items())),
        "stopped": stopped,
        "dead_letters": [
            {"key": letter.key, "status": letter.status, "reason": letter.reason}
            for letter in letters[:DEAD_LISTED]
        ],
        "dead_letters_folder": DEAD_FOLDER,
    }

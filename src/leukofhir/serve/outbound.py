"""The service's deliverer (``serve --fhir-base``): one, in the first service process (the
one that does the upkeep; the only one with ``--workers 1``), because one patient's
documents reach the server in order only when one loop hands them out.

Every service process queues the Bundles of the messages it finishes in the journal's
outbox, in the transaction of their outcome and the patients' states
(:meth:`~leukofhir.serve.journal.Journal.complete`).  The deliverer runs in the first
process's event loop beside its listeners, with a connection of its own to the journal;
that process wakes it after each of its own commits, and it looks every
:data:`POLL` seconds for what the other processes committed.

A 401/403 (or an untrusted certificate) stops delivery until the service is restarted
with the token fixed: every document stays pending, ``/healthz`` answers 503 with the
reason (every process reads it from ``outbox_meta``), and the log says so.  If a process
dies, the supervisor starts a new first process, which takes the deliverer over
(``OUT/.delivery.lock``: a ``leukofhir deliver OUT`` running meanwhile makes it wait).
With the journal in PostgreSQL (``--journal``), the first process of every host delivers,
and the outbox's claims keep one document with one deliverer
(:mod:`leukofhir.delivery.pgoutbox`).
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from leukofhir.delivery.background import deliverer_for
from leukofhir.delivery.client import TransactionClient
from leukofhir.delivery.command import BASE_META
from leukofhir.delivery.deliverer import Deliverer
from leukofhir.delivery.lock import DeliveryBusyError, DeliveryLock
from leukofhir.delivery.options import DeliveryOptions
from leukofhir.delivery.outbox import SqliteOutbox
from leukofhir.logs import get_logger
from leukofhir.serve.journal import JOURNAL_NAME, STOPPED_META
from leukofhir.serve.metrics import Metrics

__all__ = ["POLL", "STOPPED_META", "ServiceDelivery"]

log = get_logger("leukofhir.serve")

POLL = 0.25  # seconds between looks for documents committed by the other processes
LOCK_RETRY = 5.0  # seconds between tries for the delivery lock


class ServiceDelivery:
    def __init__(
        self,
        out: Path,
        options: DeliveryOptions,
        metrics: Metrics,
        *,
        durable: bool,
        journal: str = "",
    ) -> None:
        """``journal``: a ``postgresql://`` URL (``serve --journal``), or "": OUT's."""
        self.out = out
        self.journal = journal
        self.options = options
        self.metrics = metrics
        self._durable = durable
        self._deliverer: Deliverer | None = None
        self._stopping = False

    def wake(self) -> None:
        """Documents were committed by this process."""
        if self._deliverer is not None:
            self._deliverer.wake()

    def stop(self) -> None:
        self._stopping = True
        if self._deliverer is not None:
            self._deliverer.stop()

    async def run(self, grace: float = 10.0) -> None:
        """Deliver until :meth:`stop` (then the attempts in flight get ``grace`` seconds)."""
        lock = DeliveryLock(self.out)
        told = False
        while not self._stopping:
            try:
                lock.acquire()
                break
            except DeliveryBusyError as exc:
                if not told:
                    log.warning("delivery_waiting", reason=str(exc))
                    told = True
                await asyncio.sleep(LOCK_RETRY)
        if self._stopping:
            return
        outbox = self._open()
        try:
            outbox.set_meta(STOPPED_META, None)
            outbox.set_meta(BASE_META, self.options.base)  # for leukofhir deliver OUT
            async with TransactionClient(
                self.options.server(), observe=self.metrics.observe_fhir
            ) as client:
                self._deliverer = deliverer_for(
                    outbox, client, self.options, [self.metrics.record_delivery], poll=POLL
                )
                if self._stopping:
                    return
                summary = await self._deliverer.run(until_idle=False, grace=grace)
            if summary.stopped is not None:
                reason = f"delivery stopped: {summary.stopped.reason}; restart with it fixed"
                outbox.set_meta(STOPPED_META, reason)
                log.error("delivery_stopped", reason=summary.stopped.reason)
        finally:
            self._deliverer = None
            with contextlib.suppress(Exception):
                outbox.close()
            lock.release()

    def _open(self) -> SqliteOutbox:
        dead = self.out / "dead"
        if self.journal:  # every host's service delivers from it: see delivery.pgoutbox
            from leukofhir.serve.pgjournal import open_outbox

            return open_outbox(self.journal, dead_letters=dead, durable=self._durable)
        return SqliteOutbox.open(self.out / JOURNAL_NAME, dead_letters=dead, durable=self._durable)

"""Delivering an outbox that lives in a database file (the batch ledger, the service
journal): :func:`deliver_outbox` until nothing is left to try (the ``deliver`` command),
and :class:`BackgroundDelivery`, the same in a thread of its own while the owner of the
database keeps queueing (``batch``).

The thread has its own event loop and its own connection to the file, so the owner's
transactions and the deliverer's marks are separate SQLite transactions: a document is
handed out only once the owner committed it (a reader sees committed rows only), i.e.
after it is durable.  The owner calls :meth:`BackgroundDelivery.wake` after each commit
that queued documents; the deliverer then looks at once instead of at its next poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from leukofhir.delivery.client import TransactionClient
from leukofhir.delivery.deliverer import Deliverer, Hook, RunSummary, Stopped
from leukofhir.delivery.options import DeliveryOptions
from leukofhir.delivery.outbox import Outbox, SqliteOutbox
from leukofhir.delivery.stats import DeliveryStats

__all__ = ["BackgroundDelivery", "Totals", "deliver_outbox", "deliverer_for"]


@dataclass(slots=True)
class Totals:
    """What the runs of one delivery did, added up."""

    attempts: int = 0
    delivered: int = 0
    retried: int = 0
    dead: int = 0
    stopped: Stopped | None = None

    def add(self, summary: RunSummary) -> None:
        self.attempts += summary.attempts
        self.delivered += summary.delivered
        self.retried += summary.retried
        self.dead += summary.dead
        self.stopped = summary.stopped or self.stopped


def deliverer_for(
    outbox: Outbox,
    client: TransactionClient,
    options: DeliveryOptions,
    hooks: Sequence[Hook],
    *,
    poll: float = 1.0,
) -> Deliverer:
    """The delivery loop over ``outbox`` to ``client``'s server, as ``options`` say."""
    return Deliverer(
        outbox,
        client.post,
        profile=options.profile,
        policy=options.policy(),
        concurrency=options.concurrency,
        hooks=hooks,
        poll=poll,
    )


async def deliver_outbox(
    outbox: SqliteOutbox,
    options: DeliveryOptions,
    *,
    stats: DeliveryStats | None = None,
    hooks: Sequence[Hook] = (),
) -> RunSummary:
    """Deliver until nothing is left to try (held documents aside) or delivery stops."""
    stats = stats or DeliveryStats()
    async with TransactionClient(options.server(), observe=stats.observe) as client:
        deliverer = deliverer_for(outbox, client, options, [stats.record, *hooks])
        return await deliverer.run(until_idle=True)


class BackgroundDelivery:
    """A deliverer in a thread: :meth:`start`, :meth:`wake` after each commit,
    :meth:`finish` (wait until nothing is left to try) or :meth:`stop` (now; pending
    documents stay pending).  ``stats`` and ``totals`` are readable from any thread."""

    def __init__(
        self,
        database: Path,
        options: DeliveryOptions,
        *,
        dead_letters: Path,
        durable: bool = True,
        grace: float = 10.0,
        hooks: Sequence[Hook] = (),
    ) -> None:
        self.database = database
        self.options = options
        self.stats = DeliveryStats()
        self.totals = Totals()
        self.error: BaseException | None = None  # a fault of ours ended the thread
        self._dead_letters = dead_letters
        self._durable = durable
        self._grace = grace
        self._hooks = tuple(hooks)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._deliverer: Deliverer | None = None
        self._new: asyncio.Event | None = None
        self._finishing = False
        self._closing = False
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._main, name="fhir-delivery", daemon=True)

    @property
    def stopped(self) -> Stopped | None:
        return self.totals.stopped

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def start(self) -> None:
        self._thread.start()
        self._started.wait()

    def wake(self) -> None:
        """New documents were committed (from any thread)."""
        self._call(self._on_wake)

    def finish(self, interrupted: Callable[[], bool] | None = None) -> Totals:
        """Wait until nothing is left to try, delivery stops, or ``interrupted()`` is true
        (then stop, the attempts in flight given ``grace`` seconds)."""
        self._finishing = True
        self.wake()
        while self._thread.is_alive():
            if interrupted is not None and interrupted():
                self.stop()
                break
            self._thread.join(0.1)
        self._thread.join()
        return self.totals

    def stop(self) -> None:
        """Stop now (from any thread); returns once the thread has ended."""
        self._closing = True
        self._call(self._on_stop)
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join()

    # -- the thread ------------------------------------------------------------------------
    def _call(self, function: Callable[[], None]) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # closed meanwhile: the thread is ending
                loop.call_soon_threadsafe(function)

    def _on_wake(self) -> None:
        if self._new is not None:
            self._new.set()
        if self._deliverer is not None:
            self._deliverer.wake()

    def _on_stop(self) -> None:
        if self._deliverer is not None:
            self._deliverer.stop()
        self._on_wake()

    def _main(self) -> None:
        try:
            asyncio.run(self._run())
        except BaseException as exc:  # reported to the owner, which stops
            self.error = exc
        finally:
            self._started.set()

    async def _run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._new = asyncio.Event()
        outbox = SqliteOutbox.open(
            self.database, dead_letters=self._dead_letters, durable=self._durable
        )
        try:
            async with TransactionClient(
                self.options.server(), observe=self.stats.observe
            ) as client:
                hooks = [self.stats.record, *self._hooks]
                self._deliverer = deliverer_for(outbox, client, self.options, hooks)
                self._started.set()
                while not self._closing:
                    self._new.clear()
                    self.totals.add(await self._deliverer.run(until_idle=True, grace=self._grace))
                    if self.totals.stopped is not None or self._closing:
                        break
                    if self._new.is_set():
                        continue
                    if self._finishing:
                        break
                    await self._new.wait()
        finally:
            self._deliverer = None
            outbox.close()

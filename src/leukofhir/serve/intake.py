"""The service's engine, shared by the MLLP and HTTP listeners.

A message goes through three steps, each in groups (everything that arrived while the
previous group was busy shares one transaction and one fsync)::

    submit ─► store (journal, I/O thread) ─► process (worker processes) ─► finish
              └─ Ticket: stored or not        (pure core)                 (sink, then the
                 (commit ACK, MLLP/2 ACK)                                  journal: done)
                                                                          └─ Reply (ACK)

* The application reply exists only once the outputs are written and the journal says
  ``done``: an AA is never sent for a message that is not safe.
* A re-send of a finished message (same sender, MSH-10 and content) is answered with the
  reply stored for it, without new output; a re-send of one still in flight waits for it.
  The same MSH-10 with other content is a new message (logged as a warning).
* Messages stored but unfinished when the service stopped or died are processed at start.
* If the journal or the sink fails, the message is answered AR ("not accepted, send it
  again"): the sender keeps it, and nothing acknowledged is lost.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from leukofhir.errors import ErrorCode, Issue, error
from leukofhir.logs import get_logger
from leukofhir.serve.header import NO_HEADER, Header, content_hash, read_header
from leukofhir.serve.journal import Arrival, Completion, Entry, Journal
from leukofhir.serve.metrics import Metrics
from leukofhir.serve.reply import (
    application_ack,
    fhir_reply,
    refusal_ack,
    refusal_body,
    store_failure,
)
from leukofhir.serve.sink import Sink
from leukofhir.serve.work import (
    Job,
    Processed,
    Processor,
    ProcessorConfig,
    Result,
    deliver,
    init_pool,
    run_jobs,
)

__all__ = ["Intake", "Reply", "Ticket"]

log = get_logger("leukofhir.serve")
T = TypeVar("T")
_RANK = {"processed": 0, "skipped": 1, "rejected": 2}
_CHUNK = 16  # most jobs in one call to a worker


@dataclass(frozen=True, slots=True)
class Reply:
    """The application-level answer to one message."""

    code: str  # HL7: AA | AE | AR; FHIR: the HTTP status ("200", "422", "503")
    body: bytes  # HL7: the ACK message (unframed); FHIR: the response body
    outcome: str  # processed | skipped | rejected | duplicate | unstored
    results: tuple[Result, ...] = ()  # what processing gave (not for a duplicate)
    findings: tuple[str, ...] = ()


@dataclass(slots=True)
class Ticket:
    """A submitted message once the journal answered; ``reply`` resolves after processing."""

    header: Header
    entry: Entry | None  # None: the journal could not store it (``failure`` says why)
    reply: asyncio.Future[Reply]
    failure: Issue | None = None

    @property
    def stored(self) -> bool:
        return self.entry is not None


@dataclass(slots=True)
class _Pending:
    data: bytes
    format: str
    channel: str
    header: Header
    arrival: Arrival
    started: float
    stored: asyncio.Future[Ticket]
    reply: asyncio.Future[Reply]
    entry: Entry | None = None
    waiters: list[_Pending] = field(default_factory=list)
    promised: bool = False  # something will say "stored" before the outcome is: sync it
    documents: bool = False  # the caller wants the output documents in the reply


class Intake:
    def __init__(
        self,
        journal: Journal,
        sink: Sink,
        config: ProcessorConfig,
        *,
        workers: int,
        metrics: Metrics | None = None,
        max_group: int = 64,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.journal = journal
        self.sink = sink
        self.metrics = metrics
        self._config = config
        self._workers = workers
        self._max_group = max_group
        self._clock = clock
        self._worker_sink = sink if sink.parallel else None  # delivered where processed
        self._io = ThreadPoolExecutor(1, thread_name_prefix="leukofhir-io")
        self._pool: Executor | None = None
        self._inline: Processor | None = None
        self._arrivals: asyncio.Queue[_Pending] = asyncio.Queue()
        self._work: asyncio.Queue[_Pending] = asyncio.Queue()
        self._inflight: dict[int, _Pending] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._done: asyncio.Queue[tuple[_Pending, Processed]] = asyncio.Queue()
        self._slots = asyncio.Semaphore(2 * max(1, workers))
        self._processing: set[asyncio.Task[None]] = set()

    # -- life cycle -------------------------------------------------------------------
    async def start(self) -> int:
        """Start the pool and the loops; queue what a previous run left unfinished.
        Returns how many such messages there were."""
        if self._workers > 0:
            self._pool = self._new_pool()
        else:
            self._inline = await self._in_io(Processor, self._config, self._worker_sink)
        left = await self._in_io(self.journal.pending)
        for item in left:
            pending = self._pending(item.data, item.format, "recovery")
            pending.entry = Entry(item.id, item.received, new=True, done=False)
            self._inflight[item.id] = pending
            self._work.put_nowait(pending)
        if left:
            log.warning("recovering", messages=len(left))
        self._tasks = [
            asyncio.create_task(self._store_loop(), name="leukofhir-store"),
            asyncio.create_task(self._process_loop(), name="leukofhir-process"),
            asyncio.create_task(self._finish_loop(), name="leukofhir-finish"),
        ]
        return len(left)

    def _new_pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            self._workers,
            mp_context=multiprocessing.get_context("forkserver"),
            initializer=init_pool,
            initargs=(self._config, self._worker_sink),
        )

    async def warm_up(self) -> None:
        """Start every worker process now rather than on the first message."""
        if isinstance(self._pool, ProcessPoolExecutor):
            loop = asyncio.get_running_loop()
            await asyncio.gather(
                *(loop.run_in_executor(self._pool, run_jobs, []) for _ in range(self._workers))
            )

    @property
    def busy(self) -> int:
        """Messages accepted and not yet answered."""
        return self._arrivals.qsize() + len(self._inflight)

    async def close(self, timeout: float = 30.0) -> None:
        """Finish what is in hand (within ``timeout``), then stop the pool and the journal."""
        deadline = time.monotonic() + timeout
        while self.busy and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        await self._in_io(self.journal.close)
        await self._in_io(self.sink.close)
        self._io.shutdown(wait=True)

    # -- the listeners' side ---------------------------------------------------------------
    async def submit(
        self,
        data: bytes,
        *,
        format: str = "hl7v2",
        channel: str = "mllp",
        commit_ack: bool = False,
        documents: bool = False,
    ) -> Ticket:
        """Store ``data`` (one HL7 v2 message, or a FHIR body); returns once the journal has
        it (or failed to store it).  ``await ticket.reply`` for the application answer.

        ``commit_ack``: the caller will tell the sender "stored" before the outcome (MLLP
        release 2); an enhanced-mode message (MSH-15/16) implies it.  Only then is the
        receipt itself synced to disk; otherwise the one sync of the outcome's commit
        covers both (the write-ahead log is sequential), and a receipt lost in a power cut
        was never acknowledged.  ``documents``: the reply's results keep the output
        documents (they are dropped once written otherwise)."""
        pending = self._pending(data, format, channel)
        pending.promised = commit_ack or pending.header.enhanced
        pending.documents = documents or format != "hl7v2"
        self._arrivals.put_nowait(pending)
        return await asyncio.shield(pending.stored)

    def _pending(self, data: bytes, format: str, channel: str) -> _Pending:
        header = read_header(data) if format == "hl7v2" else NO_HEADER
        arrival = Arrival(
            header.sender, header.control_id, content_hash(data), format, channel, data
        )
        loop = asyncio.get_running_loop()
        return _Pending(
            data,
            format,
            channel,
            header,
            arrival,
            time.perf_counter(),
            loop.create_future(),
            loop.create_future(),
        )

    async def rerun(self, ticket: Ticket) -> tuple[Result, ...]:
        """The results of a stored message made again without writing anything (the same
        bytes as its outputs: processing is deterministic given the time it was received)."""
        entry = ticket.entry
        if entry is None:
            return ()
        data = await self._in_io(self.journal.data, entry.id)
        processed = await self._run([Job(entry.id, "hl7v2", entry.received, data, write=False)])
        return processed[0].results

    # -- store -----------------------------------------------------------------------------
    async def _store_loop(self) -> None:
        while True:
            group = await _take(self._arrivals, self._max_group)
            moment = self._clock().isoformat(timespec="seconds")
            try:
                entries = await self._in_io(
                    self.journal.receive,
                    [p.arrival for p in group],
                    moment,
                    any(p.promised for p in group),
                )
            except Exception as exc:  # the journal is unavailable (disk full, locked, gone)
                log.error("journal_unavailable", error=type(exc).__name__, messages=len(group))
                for pending in group:
                    self._refuse(pending, store_failure("the journal is unavailable"))
                continue
            for pending, entry in zip(group, entries, strict=True):
                self._stored(pending, entry)

    def _stored(self, pending: _Pending, entry: Entry) -> None:
        pending.entry = entry
        pending.stored.set_result(Ticket(pending.header, entry, pending.reply))
        if entry.reused_id:
            log.warning(
                "control_id_reused",
                control_id=pending.header.control_id,
                facility=pending.header.facility,
                note="same MSH-10 as an earlier message with other content: processed as new",
            )
        if entry.done:
            self._answer(pending, self._duplicate(pending, entry))
        elif (first := self._inflight.get(entry.id)) is not None:
            first.waiters.append(pending)
        else:  # new, or stored earlier and never finished (a failed sink, say)
            self._inflight[entry.id] = pending
            self._work.put_nowait(pending)

    def _duplicate(self, pending: _Pending, entry: Entry) -> Reply:
        return Reply(entry.ack, entry.reply or b"", "duplicate")

    def _refuse(self, pending: _Pending, issue: Issue) -> None:
        """Not stored: AR (or 503), the sender must send it again."""
        if not pending.stored.done():
            pending.stored.set_result(Ticket(pending.header, None, pending.reply, issue))
        reply = self._failure_reply(pending, issue)
        self._answer(pending, reply)
        for waiter in pending.waiters:
            self._answer(waiter, reply)

    def _failure_reply(self, pending: _Pending, issue: Issue) -> Reply:
        if pending.format != "hl7v2":
            return Reply("503", refusal_body(issue, seed=pending.arrival.sha256), "unstored")
        control_id = f"LFX{time.time_ns()}"
        ack = refusal_ack(pending.data, issue, control_id=control_id, moment=self._clock())
        return Reply("AR", ack, "unstored")

    # -- process ---------------------------------------------------------------------------
    async def _process_loop(self) -> None:
        """Jobs to the workers as soon as they are stored (at most two calls in flight per
        worker), so that processing, commits and network overlap."""
        while True:
            group = await _take(self._work, self._max_group)
            size = min(_CHUNK, -(-len(group) // max(1, self._workers)))
            for start in range(0, len(group), size):
                await self._slots.acquire()
                task = asyncio.create_task(self._process(group[start : start + size]))
                self._processing.add(task)
                task.add_done_callback(self._processing.discard)

    async def _process(self, chunk: list[_Pending]) -> None:
        try:
            processed = await self._run([_job(p) for p in chunk])
        except Exception as exc:  # a worker died (killed, out of memory)
            log.error("processing_failed", error=type(exc).__name__, messages=len(chunk))
            if isinstance(exc, BrokenProcessPool) and self._pool is not None:
                self._pool.shutdown(wait=False, cancel_futures=True)
                self._pool = self._new_pool()
            issue = error(
                ErrorCode.INTERNAL_ERROR,
                "leukofhir could not process the message now (a worker failed); it was"
                " NOT accepted: send it again",
                fhir_type="transient",
            )
            for pending in chunk:
                self._drop_inflight(pending)
                self._refuse(pending, issue)
        else:
            for pending, done in zip(chunk, processed, strict=True):
                self._done.put_nowait((pending, done))
        finally:
            self._slots.release()

    async def _finish_loop(self) -> None:
        while True:
            items = await _take(self._done, self._max_group)
            await self._finish([p for p, _ in items], [done for _, done in items])

    async def _run(self, jobs: list[Job]) -> list[Processed]:
        if self._inline is not None:
            return await self._in_io(self._inline.run, jobs)
        assert self._pool is not None
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, run_jobs, jobs)

    # -- finish ----------------------------------------------------------------------------
    async def _finish(self, group: Sequence[_Pending], processed: Sequence[Processed]) -> None:
        moment = self._clock()
        replies = [self._reply(p, done, moment) for p, done in zip(group, processed, strict=True)]
        failed = [p for p, done in zip(group, processed, strict=True) if done.failure]
        try:
            await self._in_io(self._record, group, processed, replies)
        except Exception as exc:  # the sink or the journal failed: nothing is acknowledged
            log.error("store_failed", error=type(exc).__name__, messages=len(group))
            failed = list(group)
        if failed:
            if len(failed) < len(group):
                log.error("sink_failed", messages=len(failed))
            issue = store_failure("the outputs could not be written")
            for pending in failed:
                self._drop_inflight(pending)
                self._refuse(pending, issue)
        for pending, reply in zip(group, replies, strict=True):
            if pending.reply.done():
                continue
            self._drop_inflight(pending)
            self._answer(pending, reply)
            duplicate = Reply(reply.code, reply.body, "duplicate")
            for waiter in pending.waiters:
                self._answer(waiter, duplicate)

    def _reply(self, pending: _Pending, processed: Processed, moment: datetime) -> Reply:
        results = processed.results
        outcome = max((r.disposition for r in results), key=_RANK.__getitem__, default="rejected")
        findings = tuple(f for r in results for f in r.findings)
        if pending.format == "hl7v2":
            code, body = application_ack(
                pending.data, results, control_id=f"LF{processed.id}", moment=moment
            )
        else:
            status, body = fhir_reply(results, seed=pending.arrival.sha256)
            code = str(status)
        return Reply(code, body, outcome, results, findings)

    def _record(
        self, group: Sequence[_Pending], processed: Sequence[Processed], replies: Sequence[Reply]
    ) -> None:
        """Outputs not yet delivered (a sink that is not parallel), then the journal's
        ``done`` for every message whose outputs are in place, in one transaction."""
        completions = []
        for pending, done, reply in zip(group, processed, replies, strict=True):
            if done.failure:
                continue
            outputs = done.outputs
            if outputs is None:
                outputs = deliver(self.sink, _job(pending), done.results)
            completions.append(
                Completion(
                    done.id,
                    reply.outcome,
                    reply.code,
                    reply.body,
                    sum(r.reports for r in done.results),
                    reply.findings,
                    outputs,
                )
            )
        self.journal.complete(completions)

    # -- helpers ---------------------------------------------------------------------------
    def _drop_inflight(self, pending: _Pending) -> None:
        if pending.entry is not None:
            self._inflight.pop(pending.entry.id, None)

    def _answer(self, pending: _Pending, reply: Reply) -> None:
        if pending.reply.done():
            return
        pending.reply.set_result(reply)
        seconds = time.perf_counter() - pending.started
        if self.metrics is not None:
            self.metrics.observe(
                channel=pending.channel,
                outcome=reply.outcome,
                code=reply.code,
                findings=reply.findings,
                seconds=seconds,
            )
        log.info(
            "message",
            channel=pending.channel,
            control_id=pending.header.control_id,
            facility=pending.header.facility,
            outcome=reply.outcome,
            ack=reply.code,
            ms=round(seconds * 1000, 2),
        )

    async def _in_io(self, function: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._io, function, *args)


def _job(pending: _Pending) -> Job:
    assert pending.entry is not None
    arrival = pending.arrival
    return Job(
        pending.entry.id,
        pending.format,
        pending.entry.received,
        pending.data,
        arrival.sender,
        arrival.control_id,
        arrival.sha256,
        documents=pending.documents,
    )


async def _take(queue: asyncio.Queue[T], most: int) -> list[T]:
    """The next item, and every other one already waiting (up to ``most``)."""
    group = [await queue.get()]
    while len(group) < most and not queue.empty():
        group.append(queue.get_nowait())
    return group

"""The service's engine, one per service process, shared by its MLLP and HTTP listeners.

    submit ─► journal: receipt ─► Ticket            (the commit ACK, MLLP/2 block)
         └──► next turn of the loop: process (pure core) ─► sink ─► journal: done
                                                                   └─► Reply (the ACK)

Everything runs in the process's event loop, one message at a time: the work is CPU-bound
(about a millisecond and a half for a 19-OBX CBC, outputs included) and the service runs
one such process per core on shared listening sockets, so the hot path has no threads, no
queues between processes and no lock convoys.

* The application reply exists only once the outputs are written and the journal says
  ``done`` in a synced commit: an AA is never sent for a message that is not safe.
* A re-send of a finished message (same sender, MSH-10 and content) is answered with the
  reply stored for it, without new output.  A re-send of one in flight waits for it: in
  this process directly, in another one by watching the journal (and taking the message
  over if that process died).  The same MSH-10 with other content is a new message
  (logged as a warning).
* Messages stored but unfinished when the service stopped or died are processed again
  (:meth:`Intake.recover`), with the time they were received: the same bytes come out.
* If the journal or the sink fails, the message is answered AR ("not accepted, send it
  again"): the sender keeps it, and nothing acknowledged is lost.
* If processing the message (or building its reply) raises anything, that is a fault of
  ours on this message: it is answered (AR with ERR 207, or HTTP 500, OperationOutcome
  code ``exception``), marked ``failed`` in the journal with the reason, and the next
  message goes on.  A re-send gets the stored answer (not a new attempt: the fault is
  deterministic); ``leukofhir journal OUT --retry ID`` puts it back for processing.
* With a publisher (``serve --publish``, README: Live streams on NATS JetStream) the pure
  core still judges each message first: one it rejects, or that names no patient, is
  answered and written here as above; an accepted one is published to the stream, keyed
  by its (first) patient, and answered (the core's AA/AE) only once the broker stored it;
  the journal marks it ``done`` with outcome ``published``, and a worker settles and
  writes it.  A publish that fails is answered AR ("send it again") and the message stays
  ``received``: a re-send, or the next start, publishes it again (the broker drops a
  second copy by its ``Nats-Msg-Id``).
* Stopping never waits on something that cannot finish: re-sends watching another
  process are answered AR at once, and whatever is still unanswered when the shutdown
  time is up is answered AR (kept in the journal, finished at the next start).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Protocol

from leukofhir.context import Settings
from leukofhir.errors import ErrorCode, Issue
from leukofhir.lifecycle.store import patient_key
from leukofhir.logs import get_logger
from leukofhir.serve.fault import Fault, fault_of
from leukofhir.serve.header import NO_HEADER, Header, content_hash, read_header
from leukofhir.serve.journal import DONE, FAILED, Arrival, Completion, Entry, Journal, Pending
from leukofhir.serve.metrics import Metrics
from leukofhir.serve.reply import (
    application_ack,
    fhir_reply,
    not_now,
    processing_fault,
    refusal_ack,
    refusal_body,
    store_failure,
)
from leukofhir.serve.sink import Sink
from leukofhir.serve.states import PatientStates
from leukofhir.serve.work import (
    Job,
    Outbound,
    Processed,
    Processor,
    Result,
    deliver,
    notes_of,
    refused,
)
from leukofhir.stream.settings import Envelope, message_id, wrap

__all__ = ["Intake", "Publisher", "Reply", "Ticket"]

log = get_logger("leukofhir.serve")
_RANK = {"processed": 0, "skipped": 1, "rejected": 2}
_POLL = 0.01  # seconds between looks at a message another process is working on
_WAIT = 30.0  # longest wait for it before answering AR
_KEEP_FAILED = store_failure("the outputs could not be kept")
_STOPPING = not_now("the service is stopping")
_UNPUBLISHED = not_now("the stream is unavailable")
PUBLISHED = "published"  # the journal's outcome of a message handed to the stream
_POLL_DELIVERY = 0.02  # seconds between looks at a message's delivery (--ack-after delivered)
_UNDELIVERED_TEXT = (
    "processed and kept, but not delivered to the FHIR server yet; send it again later"
    " (it is not processed twice)"
)
_DEAD_TEXT = (
    "processed and kept, but the FHIR server refused its result for good (a dead letter:"
    " leukofhir deliver OUT --status); an operator must act"
)


class Publisher(Protocol):
    """Where ``serve --publish`` hands accepted messages (the JetStream adapter)."""

    def publish(self, key: str, data: bytes, msg_id: str = "") -> None: ...

    async def publish_async(self, key: str, data: bytes, msg_id: str = "") -> None: ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Reply:
    """The application-level answer to one message."""

    code: str  # HL7: AA | AE | AR; FHIR: the HTTP status ("200", "422", "500", "503")
    body: bytes  # HL7: the ACK message (unframed); FHIR: the response body
    outcome: str  # processed | skipped | rejected | failed | duplicate | unstored
    results: tuple[Result, ...] = ()  # what processing gave (not for a duplicate)
    findings: tuple[str, ...] = ()
    reason: str = ""  # failed, or a re-send of a failed message: the fault (journal reason)


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


@dataclass(slots=True, eq=False)
class _Pending:
    data: bytes
    format: str
    channel: str
    header: Header
    arrival: Arrival
    started: float
    reply: asyncio.Future[Reply] | None
    entry: Entry | None = None
    waiters: list[_Pending] = field(default_factory=list)


class Intake:
    def __init__(
        self,
        journal: Journal,
        sink: Sink,
        settings: Settings,
        *,
        metrics: Metrics | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        ack_after_delivered: bool = False,
        ack_timeout: float = 30.0,
        publisher: Publisher | None = None,
    ) -> None:
        self.journal = journal
        self.publisher = publisher
        self._publishing: set[asyncio.Task[None]] = set()
        self.on_commit: Callable[[], None] | None = None  # Bundles were queued (the deliverer)
        self._ack_after_delivered = ack_after_delivered and journal.outbox is not None
        self._ack_timeout = ack_timeout
        self.sink = sink
        self.metrics = metrics
        self.owner = journal.owner
        self._processor = Processor(settings)
        self._states = PatientStates(journal.states)
        self._clock = clock
        self._inflight: dict[int, _Pending] = {}
        self._finished: list[tuple[_Pending, Completion, Reply]] = []
        self._watching: set[asyncio.Task[None]] = set()
        self._stopping = False
        self._failures = 0  # messages failed by this process (recovery reports its share)

    @property
    def busy(self) -> int:
        """Messages accepted and not yet answered."""
        return len(self._inflight) + len(self._watching) + len(self._publishing)

    def recover(self, owners: Sequence[int] | None = None) -> int:
        """Process the stored, unfinished messages (all, or those of processes that
        died, or 0: those put back by ``journal --retry``); returns how many.  Runs before
        the listeners accept anything, and in a running service for put-back ones.  A
        message whose processing fails is marked failed, and the next one goes on."""
        left = self.journal.pending(owners)
        failures = self._failures
        for item in left:
            if item.owner != self.owner and not self.journal.claim(item.id, self.owner, item.owner):
                continue
            self._work(self._recovered(item))
        if left:
            log.warning("recovered", messages=len(left), failed=self._failures - failures)
        return len(left)

    def stop(self) -> None:
        """Stopping: re-sends watching another process's message are answered AR now (that
        process finishes it; the next re-send gets its stored answer)."""
        self._stopping = True
        for task in list(self._watching):
            task.cancel()

    def abandon(self) -> None:
        """The shutdown time is up: answer AR to whatever is still unanswered (it stays in
        the journal as received, and is finished at the next start)."""
        self.stop()
        for pending in list(self._inflight.values()):
            self._settle(pending, self._failure_reply(pending, _STOPPING))

    async def close(self, timeout: float = 30.0) -> None:
        """Finish what is in hand (within ``timeout``), then close the journal and sink."""
        self.stop()
        deadline = time.monotonic() + timeout
        while self.busy and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        self.abandon()
        await asyncio.sleep(0)  # the cancelled watchers answer
        self.journal.close()
        self.sink.close()
        if self.publisher is not None:
            self.publisher.close()

    # -- the listeners' side ---------------------------------------------------------------
    async def submit(
        self,
        data: bytes,
        *,
        format: str = "hl7v2",
        channel: str = "mllp",
        commit_ack: bool = False,
    ) -> Ticket:
        """Store ``data`` (one HL7 v2 message, or a FHIR body); returns once the journal
        has it (or failed to store it).  ``await ticket.reply`` for the application answer.

        ``commit_ack``: the caller will tell the sender "stored" before the outcome (MLLP
        release 2); an enhanced-mode message (MSH-15/16) implies it.  Only then is the
        receipt itself synced to disk; otherwise the one sync of the outcome's commit
        covers both (the write-ahead log is sequential), and a receipt lost in a power cut
        was never acknowledged."""
        pending = self._pending(data, format, channel, asyncio.get_running_loop())
        assert pending.reply is not None
        moment = self._clock().isoformat(timespec="seconds")
        durable = commit_ack or pending.header.enhanced
        try:
            [entry] = self.journal.receive(
                [pending.arrival], moment, durable=durable, owner=self.owner
            )
        except Exception as exc:  # the journal is unavailable (full, locked, gone ...)
            log.error("journal_unavailable", error=type(exc).__name__)
            issue = store_failure("the journal is unavailable")
            self._answer(pending, self._failure_reply(pending, issue))
            return Ticket(pending.header, None, pending.reply, issue)
        pending.entry = entry
        if entry.reused_id:
            log.warning(
                "control_id_reused",
                control_id=pending.header.control_id,
                facility=pending.header.facility,
                note="same MSH-10 as an earlier message with other content: processed as new",
            )
        self._route(pending, entry)
        return Ticket(pending.header, entry, pending.reply)

    async def rerun(self, ticket: Ticket) -> tuple[Result, ...]:
        """The results of a stored message made again without writing anything: its own
        resources as they were (processing is deterministic given the time it was
        received), settled against the patients' states as they are now (a version applied
        before restates the Flags it is the latest word on)."""
        entry = ticket.entry
        if entry is None:
            return ()
        data = self.journal.data(entry.id)
        job = Job(entry.id, "hl7v2", entry.received, data)
        return self._processor.run_one(job, self._states, keep=False).results

    # -- routing ---------------------------------------------------------------------------
    def delivery_problem(self) -> str:
        """Why delivery to the FHIR server stopped ("" when it runs, or there is none)."""
        return self.journal.delivery_problem()

    def _route(self, pending: _Pending, entry: Entry) -> None:
        if entry.finished:  # done or failed: the answer it got
            reply = Reply(entry.ack, entry.reply or b"", "duplicate", reason=entry.reason)
            if self._ack_after_delivered and entry.state == DONE:  # once delivered, too
                self._watch(self._await_delivery(pending, reply, entry.id, resent=True))
                return
            self._answer(pending, reply)
        elif (first := self._inflight.get(entry.id)) is not None:
            first.waiters.append(pending)
        elif self._mine(entry):
            self._inflight[entry.id] = pending
            asyncio.get_running_loop().call_soon(self._work, pending)
        else:  # another live service process has it: its outcome will be in the journal
            self._watch(self._await_other(pending, entry))

    def _watch(self, work: Coroutine[None, None, None]) -> None:
        task = asyncio.create_task(work)
        self._watching.add(task)
        task.add_done_callback(self._watching.discard)

    async def _await_delivery(
        self, pending: _Pending, reply: Reply, entry_id: int, *, resent: bool = False
    ) -> None:
        """``--ack-after delivered``: answer ``reply`` once every Bundle of the message is
        delivered; AR ("not delivered yet, send it again") after ``--ack-timeout``; AR
        at once when the server refused one for good (a dead letter: an operator acts)."""
        deadline = time.monotonic() + self._ack_timeout
        answer = self._answer if resent else self._settle
        try:
            while True:
                state = self.journal.delivery(entry_id)
                if state.done:
                    answer(pending, reply)
                    return
                if state.dead:
                    issue = not_now(_DEAD_TEXT)
                    break
                if time.monotonic() >= deadline or self._stopping:
                    issue = _STOPPING if self._stopping else not_now(_UNDELIVERED_TEXT)
                    break
                await asyncio.sleep(_POLL_DELIVERY)
        except asyncio.CancelledError:
            answer(pending, self._failure_reply(pending, _STOPPING, "undelivered"))
            raise
        answer(pending, self._failure_reply(pending, issue, "undelivered"))

    def _mine(self, entry: Entry) -> bool:
        """Is this process to work on ``entry``: new, its own (a failed attempt), or left by
        a process that died (taken over; only one process wins the claim)?"""
        if entry.new or entry.owner == self.owner:
            return True
        return not self.journal.alive(entry.owner) and self.journal.claim(
            entry.id, self.owner, entry.owner
        )

    async def _await_other(self, pending: _Pending, entry: Entry) -> None:
        deadline = time.monotonic() + _WAIT
        try:
            while time.monotonic() < deadline and not self._stopping:
                await asyncio.sleep(_POLL)
                now = self.journal.entry(entry.id)
                if now is None:
                    break
                if now.finished or now.owner != entry.owner or not self.journal.alive(entry.owner):
                    self._route(pending, now)  # answered, or watched again, or taken over
                    return
        except asyncio.CancelledError:
            self._answer(pending, self._failure_reply(pending, _STOPPING))
            raise
        issue = _STOPPING if self._stopping else store_failure("still in progress")
        self._answer(pending, self._failure_reply(pending, issue))

    # -- the work ----------------------------------------------------------------------------
    def _work(self, pending: _Pending) -> None:
        """Process and deliver; the journal's ``done`` (and so the AA) follows in
        :meth:`_flush`, shared with the other messages finished in the same turn of the
        loop: one synced commit for all of them.  Any exception out of processing or
        building the reply fails this message only (:meth:`_fail`)."""
        assert pending.entry is not None
        job = _job(pending)
        try:
            refusal = pending.header.refusal
            if refusal is not None and refusal.code is ErrorCode.UNSUPPORTED_PROCESSING_ID:
                processed = refused(job, refusal)  # the core does not judge MSH-11
            elif self.publisher is not None and (key := _stream_key(job, self._processor)):
                self._publish(pending, job, key)
                return
            else:
                processed = self._processor.run_one(job, self._states)
            reply = self._reply(pending, processed.results)
        except Exception as exc:  # a fault of ours on this message: it fails, alone
            self._fail(pending, fault_of(exc))
            return
        bundles: list[Outbound] | None = [] if self.journal.outbox is not None else None
        try:
            outputs = deliver(self.sink, job, processed.results, bundles)
        except Exception as exc:  # the sink failed: nothing is acknowledged
            log.error("sink_failed", error=type(exc).__name__, control_id=job.control_id)
            self._settle(pending, self._failure_reply(pending, _KEEP_FAILED))
            return
        reports = sum(r.reports for r in processed.results)
        completion = Completion(
            job.id,
            reply.outcome,
            reply.code,
            reply.body,
            reports,
            reply.findings,
            outputs,
            notes_of(processed.results),
            changes=processed.changes,
            documents=tuple(bundles or ()),
        )
        self._finish(pending, completion, reply)

    def _publish(self, pending: _Pending, job: Job, key: tuple[str, Processed]) -> None:
        """Hand an accepted message to the stream; its reply once the broker has it."""
        assert self.publisher is not None
        patient, processed = key
        reply = replace(self._reply(pending, processed.results), outcome=PUBLISHED)
        reports = sum(r.reports for r in processed.results)
        completion = Completion(job.id, PUBLISHED, reply.code, reply.body, reports, reply.findings)
        data = wrap(Envelope(job.format, job.received, job.data))
        msg_id = message_id(job.sender, job.control_id, job.sha256)
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # recovery at start: one after the other
            try:
                self.publisher.publish(patient, data, msg_id)
            except Exception as exc:
                self._unpublished(pending, exc)
                return
            self._finish(pending, completion, reply)
            return

        async def publish() -> None:
            assert self.publisher is not None
            try:
                await self.publisher.publish_async(patient, data, msg_id)
            except Exception as exc:
                self._unpublished(pending, exc)
                return
            self._finish(pending, completion, reply)

        task = asyncio.create_task(publish())
        self._publishing.add(task)
        task.add_done_callback(self._publishing.discard)

    def _unpublished(self, pending: _Pending, exc: Exception) -> None:
        """AR; the message stays received (a re-send or the next start publishes it)."""
        log.error("publish_failed", error=type(exc).__name__, control_id=pending.header.control_id)
        self._settle(pending, self._failure_reply(pending, _UNPUBLISHED, "unpublished"))

    def _fail(self, pending: _Pending, fault: Fault) -> None:
        """Answer a message whose processing raised, and record it as failed."""
        assert pending.entry is not None
        self._failures += 1
        log.error(
            "processing_failed",
            channel=pending.channel,
            control_id=pending.header.control_id,
            facility=pending.header.facility,
            entry=pending.entry.id,
            error=fault.error,
            where=fault.where,
            note="kept as failed: leukofhir journal OUT --failed lists it, --retry ID retries it",
        )
        reply = self._fault_reply(pending, fault)
        completion = Completion(
            pending.entry.id, FAILED, reply.code, reply.body, reason=fault.reason
        )
        self._finish(pending, completion, reply)

    def _finish(self, pending: _Pending, completion: Completion, reply: Reply) -> None:
        self._finished.append((pending, completion, reply))
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # recovery at start: no loop, no one to share with
            self._flush()
            return
        if len(self._finished) == 1:
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        finished, self._finished = self._finished, []
        moment = self._clock().astimezone(UTC).isoformat(timespec="seconds")
        try:
            stale = set(self.journal.complete([c for _, c, _ in finished], moment))
        except Exception as exc:  # the journal failed: nothing is acknowledged
            log.error("journal_failed", error=type(exc).__name__, messages=len(finished))
            self._states.committed()
            for pending, _, _ in finished:
                self._settle(pending, self._failure_reply(pending, _KEEP_FAILED))
            return
        self._states.committed()
        queued = False
        for pending, completion, reply in finished:
            if completion.id in stale:  # its patient changed meanwhile: settle it again
                log.info("settled_again", control_id=pending.header.control_id)
                self._work(pending)
                continue
            queued = queued or bool(completion.documents)
            if self._ack_after_delivered and completion.documents and pending.reply is not None:
                self._watch(self._await_delivery(pending, reply, completion.id))
            else:
                self._settle(pending, reply)
        if queued and self.on_commit is not None:
            self.on_commit()

    def _settle(self, pending: _Pending, reply: Reply) -> None:
        """Answer a message and whoever waits for it."""
        assert pending.entry is not None
        self._inflight.pop(pending.entry.id, None)
        self._answer(pending, reply)
        again = "unstored" if reply.outcome == "unstored" else "duplicate"
        duplicate = Reply(reply.code, reply.body, again, reason=reply.reason)
        for waiter in pending.waiters:
            self._answer(waiter, duplicate)

    def _reply(self, pending: _Pending, results: Sequence[Result]) -> Reply:
        assert pending.entry is not None
        outcome = max((r.disposition for r in results), key=_RANK.__getitem__, default="rejected")
        findings = tuple(f for r in results for f in r.findings)
        if pending.format == "hl7v2":
            code, body = application_ack(
                pending.data, results, control_id=f"LF{pending.entry.id}", moment=self._clock()
            )
        else:
            status, body = fhir_reply(results, seed=pending.arrival.sha256)
            code = str(status)
        return Reply(code, body, outcome, tuple(results), findings)

    # -- helpers ---------------------------------------------------------------------------
    def _pending(
        self, data: bytes, format: str, channel: str, loop: asyncio.AbstractEventLoop | None
    ) -> _Pending:
        header = read_header(data) if format == "hl7v2" else NO_HEADER
        arrival = Arrival(
            header.sender, header.control_id, content_hash(data), format, channel, data
        )
        reply = loop.create_future() if loop is not None else None
        return _Pending(data, format, channel, header, arrival, time.perf_counter(), reply)

    def _recovered(self, item: Pending) -> _Pending:
        pending = self._pending(item.data, item.format, "recovery", None)
        pending.entry = Entry(item.id, item.received, new=False, owner=self.owner)
        self._inflight[item.id] = pending
        return pending

    def _fault_reply(self, pending: _Pending, fault: Fault) -> Reply:
        """AR (ERR 207) or HTTP 500, each with the fault's OperationOutcome code
        ``exception``; built without the message if even its MSH cannot be answered."""
        assert pending.entry is not None
        issue = processing_fault(fault.error, pending.entry.id)
        if pending.format != "hl7v2":
            body = refusal_body(issue, seed=pending.arrival.sha256)
            return Reply("500", body, FAILED, reason=fault.reason)
        control_id, moment = f"LF{pending.entry.id}", self._clock()
        try:
            ack = refusal_ack(pending.data, issue, control_id=control_id, moment=moment)
        except Exception:  # the MSH itself is what fails: answer with the standard one
            ack = refusal_ack(b"", issue, control_id=control_id, moment=moment)
        return Reply("AR", ack, FAILED, reason=fault.reason)

    def _failure_reply(self, pending: _Pending, issue: Issue, outcome: str = "unstored") -> Reply:
        if pending.format != "hl7v2":
            return Reply("503", refusal_body(issue, seed=pending.arrival.sha256), outcome)
        control_id = f"LFX{time.time_ns()}"
        ack = refusal_ack(pending.data, issue, control_id=control_id, moment=self._clock())
        return Reply("AR", ack, outcome)

    def _answer(self, pending: _Pending, reply: Reply) -> None:
        if pending.reply is not None:
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
    )


def _stream_key(job: Job, processor: Processor) -> tuple[str, Processed] | None:
    """The stream key of a message the core accepts (its first patient's key, hex) and
    what the core made of it (not settled); None when it names no patient."""
    processed = processor.run_one(job)
    patients = [p for result in processed.results for p in result.patients if p]
    if not patients:
        return None
    return patient_key(patients[0]).hex(), processed

"""The delivery loop: documents from the outbox to the server, ``concurrency`` at a time
(asyncio tasks over one httpx connection pool), never two of one patient at once, so that a
patient's documents arrive strictly in order while different patients go in parallel.

* Each answer is recorded in the outbox before the next document of that patient is taken:
  delivered; retry (the next attempt time from :mod:`.policy`, or a dead letter once
  ``retry_for`` is over); dead letter; or **stop** (401/403, an untrusted certificate):
  nothing more is started, attempts in flight finish, every undelivered document stays
  pending, and :class:`RunSummary` ``stopped`` says why.
* A server's wait hint (``Retry-After`` on a 503/429, a used-up ``RateLimit``) pauses every
  new request until then, not only that document's: it speaks for the server.
* ``run(until_idle=True)`` (batch, ``deliver``) returns when nothing is left to try (held
  documents behind a dead letter do not count), waiting for scheduled retries;
  ``until_idle=False`` (the service) runs until :meth:`Deliverer.stop`, looking for new
  documents every ``poll`` seconds and whenever :meth:`Deliverer.wake` is called.
* :meth:`Deliverer.stop` is the clean shutdown: no new attempts, the ones in flight get
  ``grace`` seconds, then are cancelled (their documents stay pending: sent again next time).

The outbox is used from the event loop's thread only (SQLite calls take well under a
millisecond next to a server's ~10 ms).
"""

from __future__ import annotations

import asyncio
import contextlib
import random as _random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from leukofhir.delivery.outbox import Outbox, Pending
from leukofhir.delivery.policy import RetryPolicy, Verdict, next_attempt
from leukofhir.delivery.send import Attempt, Post, send_document
from leukofhir.delivery.split import PROFILES, ServerProfile
from leukofhir.delivery.stats import Attempted
from leukofhir.logs import get_logger

__all__ = ["Deliverer", "RunSummary", "Stopped", "deliver_now"]

Hook = Callable[[Attempted], None]
_log = get_logger("leukofhir.delivery")
_DEFAULT_POLICY = RetryPolicy()


@dataclass(frozen=True, slots=True)
class Stopped:
    status: int | None  # 401, 403; None: the server's certificate is not trusted
    reason: str


@dataclass(frozen=True, slots=True)
class RunSummary:
    attempts: int
    delivered: int
    retried: int  # attempts that ended in a scheduled retry
    dead: int
    stopped: Stopped | None


class Deliverer:
    def __init__(
        self,
        outbox: Outbox,
        post: Post,
        *,
        profile: ServerProfile = PROFILES["default"],
        policy: RetryPolicy = _DEFAULT_POLICY,
        concurrency: int = 4,
        clock: Callable[[], float] = time.time,
        random: Callable[[], float] = _random.random,
        hooks: Sequence[Hook] = (),
        poll: float = 1.0,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self._outbox = outbox
        self._post = post
        self._profile = profile
        self._policy = policy
        self._concurrency = concurrency
        self._clock = clock
        self._random = random
        self._hooks = tuple(hooks)
        self._poll = poll
        self._pause_until = 0.0
        self._stopped: Stopped | None = None
        self._closing_at: float | None = None
        self._wake = asyncio.Event()
        self._counts = dict.fromkeys(Verdict, 0)

    def wake(self) -> None:
        """New documents are queued: look now (from the loop's thread)."""
        self._wake.set()

    def stop(self) -> None:
        """Clean shutdown (from the loop's thread): see the module's text."""
        if self._closing_at is None:
            self._closing_at = time.monotonic()
        self._wake.set()

    async def run(self, *, until_idle: bool = True, grace: float = 10.0) -> RunSummary:
        """Deliver (see the module's text); a stopped deliverer may run again (after the
        token was fixed, say): each run starts afresh and counts its own attempts."""
        self._counts = dict.fromkeys(Verdict, 0)
        self._stopped = None
        self._closing_at = None
        tasks: dict[asyncio.Task[None], str] = {}
        waker: asyncio.Task[bool] | None = None
        try:
            while True:
                self._start(tasks)
                if not tasks and (
                    self._closing_at is not None
                    or self._stopped is not None
                    or (until_idle and self._outbox.next_due() is None)
                ):
                    break
                if self._closing_at is not None and time.monotonic() > self._closing_at + grace:
                    break
                if waker is None or waker.done():
                    self._wake.clear()
                    waker = asyncio.create_task(self._wake.wait())
                done, _ = await asyncio.wait(
                    {*tasks, waker},
                    timeout=self._timeout(tasks, until_idle=until_idle, grace=grace),
                    return_when=asyncio.FIRST_COMPLETED,
                )
                for task in [task for task in tasks if task in done]:
                    del tasks[task]
                    task.result()  # a fault of ours (the database, a bug) ends the run
        finally:
            leftover: list[asyncio.Task[Any]] = [*tasks, *([waker] if waker else [])]
            for task in leftover:
                task.cancel()
            for task in leftover:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        return RunSummary(
            attempts=sum(self._counts.values()),
            delivered=self._counts[Verdict.DELIVERED],
            retried=self._counts[Verdict.RETRY],
            dead=self._counts[Verdict.DEAD],
            stopped=self._stopped,
        )

    def _start(self, tasks: dict[asyncio.Task[None], str]) -> None:
        free = self._concurrency - len(tasks)
        now = self._clock()
        if free <= 0 or self._closing_at is not None or self._stopped is not None:
            return
        if now < self._pause_until:
            return
        for item in self._outbox.ready(now, free, busy=set(tasks.values())):
            tasks[asyncio.create_task(self._attempt(item))] = item.patient

    def _timeout(
        self, tasks: dict[asyncio.Task[None], str], *, until_idle: bool, grace: float
    ) -> float | None:
        now = self._clock()
        if self._closing_at is not None:
            return max(0.0, self._closing_at + grace - time.monotonic())
        if self._stopped is not None or len(tasks) >= self._concurrency:
            return None
        waits = [] if until_idle else [self._poll]
        due = self._outbox.next_due(busy=set(tasks.values()))
        if due is not None:
            waits.append(max(due, self._pause_until) - now)
        return max(0.0, min(waits)) if waits else None

    async def _attempt(self, item: Pending) -> None:
        started = time.perf_counter()
        first = item.first_attempt if item.first_attempt is not None else self._clock()
        attempt = await send_document(
            self._post,
            item.data,
            self._profile,
            item.progress,
            on_part=lambda progress: self._outbox.save_progress(item.id, progress),
        )
        verdict, reason, retry_in = self._record(item, attempt, first)
        answer = attempt.answer
        self._counts[verdict] += 1
        event = Attempted(
            key=item.key,
            verdict=verdict,
            status=answer.status,
            attempt=item.attempts + 1,
            requests=attempt.requests,
            seconds=time.perf_counter() - started,
            retry_in=retry_in,
            reason=reason,
        )
        _log.info(
            "fhir delivery",
            key=item.key,
            attempt=event.attempt,
            verdict=verdict.value,
            status=answer.status,
            requests=attempt.requests,
            ms=round(event.seconds * 1000, 1),
            retry_in=None if retry_in is None else round(retry_in, 2),
            reason=reason,
        )
        for hook in self._hooks:
            hook(event)

    def _record(
        self, item: Pending, attempt: Attempt, first: float
    ) -> tuple[Verdict, str, float | None]:
        answer = attempt.answer
        now = self._clock()
        progress = dict(attempt.progress)
        if answer.delay is not None and answer.verdict in {Verdict.DELIVERED, Verdict.RETRY}:
            self._pause_until = max(self._pause_until, now + answer.delay)
        if answer.verdict is Verdict.DELIVERED:
            self._outbox.delivered(item.id, now, answer.status)
            return Verdict.DELIVERED, answer.reason, None
        if answer.verdict is Verdict.STOP:
            self._outbox.stopped(item.id, answer.status, answer.reason)
            self._stopped = Stopped(answer.status, answer.reason)
            self._wake.set()
            return Verdict.STOP, answer.reason, None
        if answer.verdict is Verdict.RETRY:
            when = next_attempt(
                self._policy,
                retry=item.attempts,
                first_attempt=first,
                now=now,
                random=self._random,
                hint=answer.delay,
            )
            if when is not None:
                self._outbox.retry(
                    item.id,
                    first_attempt=first,
                    next_attempt=when,
                    status=answer.status,
                    reason=answer.reason,
                    progress=progress,
                )
                return Verdict.RETRY, answer.reason, when - now
            reason = f"gave up after {now - first:.0f} s of retries; last: {answer.reason}"
        else:
            reason = answer.reason
        self._outbox.dead(
            item.id,
            now,
            status=answer.status,
            reason=reason,
            outcome=answer.outcome,
            progress=progress,
        )
        return Verdict.DEAD, reason, None


async def deliver_now(
    post: Post,
    data: bytes,
    *,
    profile: ServerProfile = PROFILES["default"],
    policy: RetryPolicy = _DEFAULT_POLICY,
    clock: Callable[[], float] = time.time,
    random: Callable[[], float] = _random.random,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> Attempt:
    """One document without an outbox (``replay --fhir-base``): attempts until it is
    delivered, dead or stopped; the last attempt (dead, too, once ``retry_for`` is over)."""
    first = clock()
    progress: dict[int, str] = {}
    retry = 0
    while True:
        attempt = await send_document(post, data, profile, progress, progress.update)
        progress = dict(attempt.progress)
        if attempt.answer.verdict is not Verdict.RETRY:
            return attempt
        now = clock()
        hint = attempt.answer.delay
        when = next_attempt(
            policy, retry=retry, first_attempt=first, now=now, random=random, hint=hint
        )
        if when is None:
            reason = f"gave up after {now - first:.0f} s of retries; last: {attempt.answer.reason}"
            dead = replace(attempt.answer, verdict=Verdict.DEAD, reason=reason)
            return replace(attempt, answer=dead)
        await sleep(when - now)
        retry += 1

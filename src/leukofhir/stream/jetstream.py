"""The JetStream adapter of :class:`leukofhir.transport.Transport` (nats-py; imported only
when NATS is used: ``pip install 'leukofhir[nats]'``).

* One stream (``LEUKOFHIR``) with one subject per partition (``leukofhir.cbc.K``: the
  stream's name in lower case, ``.cbc``, the partition's number); a key (a
  patient's) always goes to the same partition, so JetStream keeps one patient's messages
  in publish order.  Work-queue retention: an acknowledged message leaves the stream.  The
  partition count is fixed when the stream is created and kept in its description
  (``partitions=16``); a consumer reads it from there.
* :meth:`JetStreamTransport.publish` returns once JetStream's PubAck came (the message is
  stored); ``Nats-Msg-Id`` makes a re-publish within the duplicate window a no-op.
* One durable pull consumer per partition (``leukofhir-K``), explicit acks, at most
  ``batch`` messages unacknowledged.  A standing pull request per partition (renewed when
  it ends or expires) hands messages on as they come.  Order after a crash: a consumer
  that finds messages of a previous holder still unacknowledged waits ``ack_wait`` before
  it pulls, so that JetStream delivers those again first, and in order, before newer ones.
  One partition belongs to one worker at a time (``worker --partition``).

nats-py is asyncio: the client runs in an event loop of its own, in a thread, so that the
synchronous :class:`~leukofhir.transport.Transport` calls (a worker's CPU-bound loop) and a
caller's own event loop (:meth:`publish_async`, the service) use one connection, and the
client answers the server's pings while the caller computes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import queue
import re
import threading
import time
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, replace
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import NotFoundError

from leukofhir.logs import get_logger
from leukofhir.stream.settings import StreamSettings, partition_of, shown_url
from leukofhir.transport import Delivery

__all__ = ["KEY_HEADER", "JetStreamTransport", "UnavailableError"]

log = get_logger("leukofhir.stream")
KEY_HEADER = "Leukofhir-Key"
_PARTITIONS = re.compile(r"\bpartitions=(\d+)\b")
_PULL_EXPIRES = 5.0  # seconds a pull request waits on the server for messages
_TICK = 0.25  # seconds between looks at expired pull requests
T = TypeVar("T")


class UnavailableError(ConnectionError):
    """The broker cannot be reached, or refused to set the stream or a consumer up."""


@dataclass(slots=True)
class _Partition:
    number: int
    consumer: str
    inbox: str = ""
    in_hand: int = 0  # delivered to us, not acknowledged yet
    requested: int = 0  # messages the pull request in flight may still bring
    expires: float = 0.0  # when that request is over at the latest (monotonic)


class JetStreamTransport:
    """A producer, and (``consume``: these partitions; None: all) a consumer."""

    def __init__(
        self,
        url: str,
        settings: StreamSettings | None = None,
        *,
        consume: Sequence[int] | None = (),
        create: bool = True,
    ) -> None:
        """Connects (raises :class:`UnavailableError`); ``create``: make the stream when it does
        not exist (a producer's job; a consumer waits for it)."""
        self.url = url
        self.settings = settings or StreamSettings()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="nats", daemon=True)
        self._thread.start()
        self._ready: queue.SimpleQueue[list[Delivery]] = queue.SimpleQueue()
        self._spare: list[Delivery] = []
        self._handing: list[Delivery] = []
        self._parts: dict[int, _Partition] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._held_until = 0.0
        self._ticking: asyncio.Task[None] | None = None
        self._closing = False
        self._pulling = False
        self._nc: Client | None = None
        self._js: JetStreamContext
        try:
            self._call(self._open(consume, create), self.settings.timeout * 3)
        except BaseException:
            self._stop_loop()
            raise

    # -- the Transport -----------------------------------------------------------------------
    def publish(self, key: str, data: bytes, msg_id: str = "") -> None:
        """Stored by JetStream on return (its PubAck); raises when it is not."""
        self._call(self._publish(key, data, msg_id), self.settings.timeout + 1)

    async def publish_async(self, key: str, data: bytes, msg_id: str = "") -> None:
        """:meth:`publish` from another event loop, without blocking it."""
        future = asyncio.run_coroutine_threadsafe(self._publish(key, data, msg_id), self._loop)
        await asyncio.wrap_future(future)

    def receive(self, limit: int, wait: float) -> list[Delivery]:
        if not self._pulling:  # a consumer pulls from its first receive on
            self._pulling = True
            self._loop.call_soon_threadsafe(self._pull_all)
        out, self._spare = self._spare[:limit], self._spare[limit:]
        deadline = time.monotonic() + wait
        while len(out) < limit:
            try:
                if out:
                    batch = self._ready.get_nowait()
                else:
                    batch = self._ready.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            room = limit - len(out)
            out.extend(batch[:room])
            self._spare.extend(batch[room:])
        return out

    def ack(self, delivery: Delivery) -> None:
        self._loop.call_soon_threadsafe(self._acked, delivery)

    def close(self) -> None:
        """Acks sent are flushed; what was delivered and not acked comes again."""
        if self._thread.is_alive():
            with contextlib.suppress(Exception):
                self._call(self._close(), self.settings.timeout)
            self._stop_loop()

    @property
    def partitions(self) -> int:
        return self.settings.partitions

    # -- in the client's loop ----------------------------------------------------------------
    async def _open(self, consume: Sequence[int] | None, create: bool) -> None:
        s = self.settings
        try:
            await _reachable(self.url, s.timeout)  # fails fast (nats-py would keep trying)
            self._nc = await asyncio.wait_for(
                nats.connect(
                    servers=[self.url],
                    name="leukofhir",
                    connect_timeout=s.timeout,
                    allow_reconnect=True,
                    max_reconnect_attempts=-1,
                    reconnect_time_wait=0.5,
                    error_cb=self._error,
                    disconnected_cb=self._disconnected,
                    reconnected_cb=self._reconnected,
                ),
                s.timeout,
            )
        except Exception as exc:
            raise UnavailableError(
                f"cannot reach the NATS server at {shown_url(self.url)}"
            ) from exc
        try:
            await self._stream(create)
            if consume is not None and not consume:
                return
            numbers = range(self.settings.partitions) if consume is None else consume
            for number in numbers:
                if not 0 <= number < self.settings.partitions:
                    raise UnavailableError(
                        f"partition {number} does not exist: stream {s.stream} has"
                        f" {self.settings.partitions} (0 to {self.settings.partitions - 1})"
                    )
                await self._consumer(number)
        except UnavailableError:
            await self._nc.close()
            raise
        except Exception as exc:
            await self._nc.close()
            raise UnavailableError(f"NATS at {shown_url(self.url)}: {_reason(exc)}") from exc

    async def _stream(self, create: bool) -> None:
        s = self.settings
        assert self._nc is not None
        self._js = js = self._nc.jetstream(timeout=s.timeout)
        try:
            info = await js.stream_info(s.stream)
        except NotFoundError:
            if not create:
                raise UnavailableError(
                    f"no stream {s.stream} on {shown_url(self.url)} yet (leukofhir serve"
                    " --publish creates it)"
                ) from None
            info = await js.add_stream(
                StreamConfig(
                    name=s.stream,
                    description=f"leukofhir partitions={s.partitions}",
                    subjects=[f"{s.subjects}.*"],
                    retention=RetentionPolicy.WORK_QUEUE,
                    storage=StorageType.FILE,
                    duplicate_window=s.duplicate_window,
                )
            )
        found = _PARTITIONS.search(info.config.description or "")
        subjects = info.config.subjects or []
        if found is None or len(subjects) != 1 or not subjects[0].endswith(".*"):
            raise UnavailableError(f"stream {s.stream} was not made by leukofhir (no partitions)")
        self.settings = replace(s, partitions=int(found[1]), subject=subjects[0][:-2])

    async def _consumer(self, number: int) -> None:
        s = self.settings
        assert self._nc is not None
        js = self._js
        part = _Partition(number, f"{s.consumer}-{number}")
        config = ConsumerConfig(
            durable_name=part.consumer,
            name=part.consumer,
            filter_subject=f"{s.subjects}.{number}",
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            ack_wait=s.ack_wait,
            max_ack_pending=s.batch,
        )
        info = await js.add_consumer(s.stream, config)
        if info.num_ack_pending:  # a previous holder's: let them come again first
            log.warning(
                "stream_held_back",
                partition=number,
                unacknowledged=info.num_ack_pending,
                seconds=s.ack_wait,
            )
            self._held_until = time.monotonic() + s.ack_wait + 0.5
        part.inbox = self._nc.new_inbox()

        async def deliver(msg: Msg) -> None:
            self._delivered(part, msg)

        await self._nc.subscribe(part.inbox, cb=deliver)
        self._parts[number] = part

    def _pull_all(self) -> None:
        self._ticking = self._loop.create_task(self._tick())
        for part in self._parts.values():
            self._request(part)

    def _request(self, part: _Partition) -> None:
        """A pull request for what the partition may still hold, if none is in flight."""
        room = self.settings.batch - part.in_hand
        if self._closing or not self._pulling or part.requested or room <= 0:
            return
        if time.monotonic() < self._held_until:
            return
        assert self._nc is not None
        subject = f"$JS.API.CONSUMER.MSG.NEXT.{self.settings.stream}.{part.consumer}"
        body = json.dumps({"batch": room, "expires": int(_PULL_EXPIRES * 1e9)}).encode()
        part.requested = room
        part.expires = time.monotonic() + _PULL_EXPIRES + 1
        self._spawn(self._nc.publish(subject, body, reply=part.inbox))

    def _delivered(self, part: _Partition, msg: Msg) -> None:
        status = (msg.headers or {}).get("Status")
        if status is not None:  # the pull request is over (408 expired, 409 ...)
            if status not in ("404", "408", "100") and not self._closing:
                log.warning("stream_pull_ended", partition=part.number, status=status)
            if status != "100":
                part.requested = 0
                self._request(part)
            return
        part.requested = max(0, part.requested - 1)
        part.in_hand += 1
        key = (msg.headers or {}).get(KEY_HEADER, "")
        if not self._handing:  # the messages of one read go over together
            self._loop.call_soon(self._hand_over)
        self._handing.append(Delivery(key, msg.data, (part.number, msg)))
        if not part.requested:
            self._request(part)

    def _hand_over(self) -> None:
        batch, self._handing = self._handing, []
        self._ready.put(batch)

    def _acked(self, delivery: Delivery) -> None:
        number, msg = cast(tuple[int, Msg], delivery.token)
        self._spawn(msg.ack())
        part = self._parts[number]
        part.in_hand -= 1
        self._request(part)

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(_TICK)
            now = time.monotonic()
            for part in self._parts.values():
                if part.requested and now > part.expires:
                    part.requested = 0  # lost (a reconnect): ask again
                self._request(part)

    async def _publish(self, key: str, data: bytes, msg_id: str) -> None:
        assert self._nc is not None
        s = self.settings
        headers = {KEY_HEADER: key}
        if msg_id:
            headers["Nats-Msg-Id"] = msg_id
        subject = f"{s.subjects}.{partition_of(key, s.partitions)}"
        await self._js.publish(subject, data, timeout=s.timeout, stream=s.stream, headers=headers)

    async def _close(self) -> None:
        self._closing = True
        if self._ticking is not None:
            self._ticking.cancel()
        if self._nc is not None and not self._nc.is_closed:
            with contextlib.suppress(Exception):
                await self._nc.flush(int(self.settings.timeout) + 1)
            await self._nc.close()

    def _spawn(self, work: Coroutine[Any, Any, Any]) -> None:
        task = self._loop.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _error(self, exc: Exception) -> None:
        log.warning("nats_error", error=type(exc).__name__)

    async def _disconnected(self) -> None:
        if self._closing:
            return
        log.warning("nats_disconnected", server=shown_url(self.url))

    async def _reconnected(self) -> None:
        log.info("nats_reconnected", server=shown_url(self.url))
        for part in self._parts.values():
            part.requested = 0
            self._request(part)

    # -- the bridge ----------------------------------------------------------------------------
    def _call(self, work: Coroutine[Any, Any, T], timeout: float) -> T:
        future = asyncio.run_coroutine_threadsafe(work, self._loop)
        try:
            return future.result(timeout)
        except TimeoutError:
            future.cancel()
            raise

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        if not self._thread.is_alive():
            self._loop.close()


async def _reachable(url: str, timeout: float) -> None:
    parts = urlsplit(url)
    _, writer = await asyncio.wait_for(asyncio.open_connection(parts.hostname, parts.port), timeout)
    writer.close()


def _reason(exc: Exception) -> str:
    return str(exc) or type(exc).__name__

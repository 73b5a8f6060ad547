"""The MLLP listener (asyncio streams): bytes from each connection through a
:class:`~leukofhir.ingest.mllp.MllpFramer`, each message through the
:class:`~leukofhir.serve.intake.Intake`, each ACK back in one write.

* Strict order per connection: the next message is taken only after the previous one is
  answered (a sender that pipelines gets its ACKs in order).
* Enhanced mode (MSH-15/16 valued): the commit ACK (CA/CE/CR) as soon as the journal
  has the message (or failed to store it), then the application ACK when MSH-16 asks for
  it, on the same connection.  Original mode: the application ACK only.
* MLLP release 2 (``release=2``): a commit acknowledgement block (``0x0B 0x06 0x1C 0x0D``;
  ``0x15`` when the message could not be stored) as soon as the journal has it, before
  the HL7 ACK; blocks of one ``0x06``/``0x15`` byte from the peer are its own commit
  acknowledgements of our ACKs and are not processed as messages.
* Limits: maximum frame size (the connection is closed beyond it), maximum number of
  connections (beyond it a new connection is closed at once), idle timeout; TCP
  keepalive and TCP_NODELAY on every connection.  EOF inside a frame discards the partial
  frame (never ACKed).  Every such event is logged, without message content.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from dataclasses import dataclass
from datetime import UTC, datetime

from leukofhir.ingest.mllp import DEFAULT_MAX_FRAME, FrameTooLargeError, MllpFramer, frame
from leukofhir.logs import get_logger
from leukofhir.serve.intake import Intake, Ticket
from leukofhir.serve.metrics import Metrics
from leukofhir.serve.reply import commit_ack

__all__ = ["COMMIT_ACK", "COMMIT_NAK", "MllpListener", "MllpSettings"]

log = get_logger("leukofhir.serve.mllp")

COMMIT_ACK = b"\x06"  # MLLP release 2 commit acknowledgement (block content)
COMMIT_NAK = b"\x15"
_READ_SIZE = 1 << 16


@dataclass(frozen=True, slots=True)
class MllpSettings:
    host: str = "127.0.0.1"
    port: int = 2575
    max_frame: int = DEFAULT_MAX_FRAME
    max_connections: int = 64
    idle_timeout: float = 600.0  # seconds without a byte before the connection is closed
    release: int = 1  # 2: MLLP release 2 commit acknowledgements


@dataclass(slots=True, eq=False)
class _Connection:
    peer: str
    task: asyncio.Task[None] | None = None
    reading: bool = True  # waiting for bytes (safe to cancel at shutdown)


class MllpListener:
    def __init__(self, intake: Intake, settings: MllpSettings, metrics: Metrics | None) -> None:
        self.intake = intake
        self.settings = settings
        self.metrics = metrics
        self._server: asyncio.Server | None = None
        self._channel: socket.socket | None = None  # connections handed by the supervisor
        self._adopting: set[asyncio.Task[None]] = set()
        self._connections: set[_Connection] = set()
        self._closing = False
        self.port = settings.port

    async def start(self, sock: socket.socket | None = None) -> None:
        """Listen on ``sock`` (already bound) or, without it, on the settings' address."""
        if sock is not None:
            self._server = await asyncio.start_server(self._handle, sock=sock, limit=_READ_SIZE)
        else:
            self._server = await asyncio.start_server(
                self._handle,
                self.settings.host,
                self.settings.port,
                limit=_READ_SIZE,
                reuse_address=True,
            )
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("listening", protocol="mllp", host=self.settings.host, port=self.port)

    def adopt_from(self, channel: socket.socket, port: int) -> None:
        """Serve connections that the supervisor accepted and passes over ``channel`` (a
        Unix socket, SCM_RIGHTS); one byte goes back each time one of them ends, so that
        the supervisor gives the next connection to the least busy process."""
        self._channel = channel
        self.port = port
        channel.setblocking(False)
        asyncio.get_running_loop().add_reader(channel.fileno(), self._receive)
        log.info("listening", protocol="mllp", port=port, via="supervisor")

    def _receive(self) -> None:
        assert self._channel is not None
        try:
            data, fds, _flags, _address = socket.recv_fds(self._channel, 64, 32)
        except BlockingIOError:
            return
        except OSError:
            data, fds = b"", []
        if not data and not fds:  # the supervisor is gone: take nothing more
            asyncio.get_running_loop().remove_reader(self._channel.fileno())
            return
        for fd in fds:
            task = asyncio.create_task(self._adopt(socket.socket(fileno=fd)))
            self._adopting.add(task)
            task.add_done_callback(self._adopting.discard)

    async def _adopt(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=_READ_SIZE, loop=loop)
        protocol = asyncio.StreamReaderProtocol(reader, self._handle, loop=loop)
        try:
            await loop.connect_accepted_socket(lambda: protocol, sock)
        except OSError:
            sock.close()
            self._ended()

    def _ended(self) -> None:
        if self._channel is not None:
            with contextlib.suppress(OSError):
                self._channel.send(b"x")

    async def close(self, timeout: float = 30.0) -> None:
        """Stop accepting; idle connections are closed, busy ones finish the message in
        hand (and send its ACK) first."""
        self._closing = True
        if self._server is not None:
            self._server.close()
        if self._channel is not None:
            asyncio.get_running_loop().remove_reader(self._channel.fileno())
        for connection in list(self._connections):
            if connection.reading and connection.task is not None:
                connection.task.cancel()
        tasks = [c.task for c in self._connections if c.task is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)
        if self._server is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), timeout=1.0)

    # -- one connection --------------------------------------------------------------------
    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = _peer(writer)
        if self._closing or len(self._connections) >= self.settings.max_connections:
            log.warning("connection_refused", peer=peer, reason="too many connections")
            writer.close()
            self._ended()
            return
        connection = _Connection(peer, asyncio.current_task())
        self._connections.add(connection)
        if self.metrics is not None:
            self.metrics.connections.inc()
        _tune(writer)
        log.info("connected", peer=peer)
        try:
            await self._serve(connection, reader, writer)
        except asyncio.CancelledError:
            log.info("disconnected", peer=peer, reason="service stopping")
        except (ConnectionError, OSError) as exc:
            log.info("disconnected", peer=peer, reason=type(exc).__name__)
        except Exception as exc:  # a fault of ours: this connection ends, the service goes on
            log.error("connection_failed", peer=peer, error=type(exc).__name__)
        finally:
            self._connections.discard(connection)
            self._ended()
            if self.metrics is not None:
                self.metrics.connections.dec()
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _serve(
        self, connection: _Connection, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        framer = MllpFramer(self.settings.max_frame)
        timeout = self.settings.idle_timeout or None
        while not self._closing:
            connection.reading = True
            try:
                data = await asyncio.wait_for(reader.read(_READ_SIZE), timeout)
            except TimeoutError:
                log.info("disconnected", peer=connection.peer, reason="idle timeout")
                return
            connection.reading = False
            if not data:
                if framer.in_frame:
                    log.warning(
                        "partial_frame_discarded",
                        peer=connection.peer,
                        note="the connection closed inside a frame; no ACK was sent for it",
                    )
                log.info("disconnected", peer=connection.peer, reason="closed by peer")
                return
            skipped = framer.skipped
            try:
                messages = framer.feed(data)
            except FrameTooLargeError as exc:
                log.warning("frame_too_large", peer=connection.peer, error=str(exc))
                return
            if framer.skipped > skipped:
                log.warning(
                    "bytes_outside_frame", peer=connection.peer, bytes=framer.skipped - skipped
                )
            for message in messages:
                if message in (COMMIT_ACK, COMMIT_NAK):  # MLLP/2: the peer commits our ACK
                    continue
                await self._one(message, writer)

    async def _one(self, message: bytes, writer: asyncio.StreamWriter) -> None:
        ticket = await self.intake.submit(
            message, channel="mllp", commit_ack=self.settings.release == 2
        )
        if self.settings.release == 2:
            writer.write(frame(COMMIT_ACK if ticket.stored else COMMIT_NAK))
        header = ticket.header
        if header.enhanced:
            code = _commit_code(ticket)
            if header.wants_accept_ack(code):
                writer.write(frame(self._commit_ack(message, code, ticket)))
                await writer.drain()
            if code != "CA":
                return
            reply = await ticket.reply
            if header.wants_application_ack(reply.code):
                writer.write(frame(reply.body))
        else:
            reply = await ticket.reply
            writer.write(frame(reply.body))
        await writer.drain()

    def _commit_ack(self, message: bytes, code: str, ticket: Ticket) -> bytes:
        issues = [i for i in (ticket.failure, ticket.header.refusal) if i is not None]
        number = ticket.entry.id if ticket.entry is not None else 0
        return commit_ack(
            message, code, issues, control_id=f"LF{number}C", moment=datetime.now(UTC)
        )


def _commit_code(ticket: Ticket) -> str:
    if not ticket.stored:
        return "CE"
    return "CR" if ticket.header.refusal is not None else "CA"


def _tune(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is None:
        return
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        for option, value in (("TCP_KEEPIDLE", 60), ("TCP_KEEPINTVL", 15), ("TCP_KEEPCNT", 4)):
            if hasattr(socket, option):
                sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, option), value)


def _peer(writer: asyncio.StreamWriter) -> str:
    address = writer.get_extra_info("peername")
    return f"{address[0]}:{address[1]}" if isinstance(address, tuple) else str(address)

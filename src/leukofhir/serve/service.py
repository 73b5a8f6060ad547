"""``leukofhir serve``: a supervisor and one service process per worker (pre-fork).

The supervisor binds the listening sockets, finishes what a previous run left in the
journal, then forks the service processes.  Each process runs an event loop with the MLLP
listener, the HTTP API and its own :class:`~leukofhir.serve.intake.Intake`.

MLLP connections are few and long-lived (an engine keeps one to four open for days), so
the kernel's spreading of connections could well put them all on one process.  The
supervisor therefore accepts them itself and hands each to the process with the fewest
(SCM_RIGHTS over a Unix socket pair; a process sends one byte back when a connection
ends).  HTTP connections are many and short: each process has its own listening socket on
the same port (SO_REUSEPORT) and the kernel spreads them.

The supervisor restarts a process that dies (after finishing the messages it held),
forwards SIGTERM/SIGINT for a graceful stop (stop accepting, answer what is in hand, close
the journal), and takes its processes with it if it is killed (PR_SET_PDEATHSIG).  With
one worker there is no supervisor: the single process does everything.  The first
process also does the background upkeep (:mod:`leukofhir.serve.upkeep`: journal
retention, messages put back by ``journal --retry``).

A stop takes at most ``--shutdown-timeout`` in each process, whatever it waits for: at
that deadline every message still unanswered is answered AR (it stays in the journal and
is finished at the next start), so no listener waits past it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import math
import os
import selectors
import signal
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import uvicorn

from leukofhir.delivery.options import DeliveryOptions
from leukofhir.logs import get_logger
from leukofhir.serve.config import ServeConfig, parse_address
from leukofhir.serve.http_app import HttpSettings, build_app
from leukofhir.serve.intake import Intake, Publisher
from leukofhir.serve.journal import open_journal
from leukofhir.serve.metrics import Metrics, mark_dead
from leukofhir.serve.mllp_server import MllpListener, MllpSettings
from leukofhir.serve.outbound import ServiceDelivery
from leukofhir.serve.sink import FolderSink, Sink, StdoutSink
from leukofhir.serve.upkeep import keep_up

__all__ = ["Listening", "run_process", "serve"]

log = get_logger("leukofhir.serve")


@dataclass(frozen=True, slots=True)
class Listening:
    """What one service process listens on: an MLLP socket of its own (one process) or a
    channel of connections handed by the supervisor, and an HTTP socket."""

    mllp: socket.socket | None
    http: socket.socket | None
    channel: socket.socket | None = None
    mllp_port: int = 0

    @property
    def ports(self) -> dict[str, int]:
        ports = {"mllp": self.mllp.getsockname()[1]} if self.mllp else {}
        if self.mllp_port:
            ports["mllp"] = self.mllp_port
        if self.http is not None:
            ports["http"] = self.http.getsockname()[1]
        return ports


def serve(
    config: ServeConfig,
    *,
    ready_file: Path | None = None,
    delivery: DeliveryOptions | None = None,
) -> int:
    """Run until SIGTERM/SIGINT; 0 after a clean stop.  ``delivery``: the FHIR server the
    Bundles go to (one deliverer, in the first service process)."""
    processes = 1 if config.sink == "stdout" else max(1, config.workers)
    mllp = _bind(*parse_address(config.mllp), shared=False) if config.mllp != "off" else None
    http: list[socket.socket | None] = (
        _bind_all(config.http, processes) if config.http != "off" else [None] * processes
    )
    _recover(config)  # before anything is accepted (connections wait in the backlog)
    if processes == 1:
        listening = Listening(mllp, http[0])
        return asyncio.run(run_process(config, listening, ready_file=ready_file, delivery=delivery))
    return _Supervisor(config, mllp, http, ready_file, delivery).run()


def _recover(config: ServeConfig, owners: list[int] | None = None) -> int:
    intake = _intake(config, None)
    try:
        return intake.recover(owners)
    finally:
        intake.journal.close()
        intake.sink.close()
        if intake.publisher is not None:
            intake.publisher.close()


def _intake(config: ServeConfig, metrics: Metrics | None) -> Intake:
    sink: Sink = (
        FolderSink(config.out, fsync=config.fsync) if config.sink == "folder" else StdoutSink()
    )
    publisher: Publisher | None = None
    if config.publish:  # nats-py and its thread: only now (each process its own connection)
        from leukofhir.stream.jetstream import JetStreamTransport
        from leukofhir.stream.settings import StreamSettings

        settings = StreamSettings(
            stream=config.stream, partitions=config.partitions, timeout=config.publish_timeout
        )
        publisher = JetStreamTransport(config.publish, settings)
    return Intake(
        open_journal(
            config.out,
            config.journal,
            durable=config.journal_sync == "full",
            outbox=bool(config.fhir_base),
        ),
        sink,
        config.settings(),
        metrics=metrics,
        ack_after_delivered=config.ack_after == "delivered",
        ack_timeout=config.ack_timeout,
        publisher=publisher,
    )


class _Uvicorn(uvicorn.Server):
    """uvicorn inside our loop: the service owns the signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def run_process(
    config: ServeConfig,
    listening: Listening,
    *,
    ready_file: Path | None = None,
    stop: asyncio.Event | None = None,
    upkeep: bool = True,
    delivery: DeliveryOptions | None = None,
) -> int:
    """One service process: listeners and engine until ``stop`` (SIGTERM/SIGINT);
    ``upkeep``: this process also does the background upkeep, and the delivery to the FHIR
    server when there is one (``delivery``)."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for number in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(number, stop.set)
    metrics = Metrics()
    intake = _intake(config, metrics)
    outbox = intake.journal.outbox
    if outbox is not None:
        metrics.watch_outbox(lambda: outbox.counts(time.time()))
    deliverer: ServiceDelivery | None = None
    delivering: asyncio.Task[None] | None = None
    if upkeep and delivery is not None:
        deliverer = ServiceDelivery(
            config.out,
            delivery,
            metrics,
            durable=config.journal_sync == "full",
            journal=config.journal,
        )
        intake.on_commit = deliverer.wake
        delivering = asyncio.create_task(deliverer.run(grace=config.shutdown_timeout / 2))
    mllp: MllpListener | None = None
    if listening.mllp is not None or listening.channel is not None:
        host, port = parse_address(config.mllp)
        settings = MllpSettings(
            host,
            port,
            config.max_frame,
            config.max_connections,  # with a supervisor, it counts them all
            config.idle_timeout,
            config.mllp_release,
        )
        mllp = MllpListener(intake, settings, metrics)
        if listening.channel is not None:
            mllp.adopt_from(listening.channel, listening.mllp_port)
        else:
            await mllp.start(listening.mllp)
    http: _Uvicorn | None = None
    http_task: asyncio.Task[None] | None = None
    if listening.http is not None:
        host, port = parse_address(config.http)
        app = build_app(
            intake,
            HttpSettings(host, port, config.http_max_body, config.token),
            metrics,
            stopping=stop.is_set,
            problem=intake.delivery_problem,
        )
        http = _Uvicorn(
            uvicorn.Config(
                app,
                log_config=None,
                access_log=False,
                lifespan="off",
                timeout_graceful_shutdown=int(config.shutdown_timeout) or None,
            )
        )
        http_task = asyncio.create_task(http.serve(sockets=[listening.http]))
    upkeeping = asyncio.create_task(keep_up(intake, config.journal_retention)) if upkeep else None
    if ready_file is not None:
        _write_ready(ready_file, listening)
    log.info("ready", **listening.ports, pid=os.getpid(), out=str(config.out))
    await stop.wait()
    log.info("stopping", pid=os.getpid(), in_progress=intake.busy)
    if upkeeping is not None:
        upkeeping.cancel()
    deadline = loop.time() + config.shutdown_timeout
    overdue = loop.call_at(deadline, intake.abandon)  # past it, nothing is waited for
    intake.stop()
    if mllp is not None:
        await mllp.close(_left(loop, deadline) + 1)
    if http is not None and http_task is not None:
        http.config.timeout_graceful_shutdown = math.ceil(_left(loop, deadline)) + 1
        http.should_exit = True
        await http_task
    await intake.close(_left(loop, deadline))
    if deliverer is not None and delivering is not None:
        deliverer.stop()
        with contextlib.suppress(Exception):  # logged by the deliverer; the stop goes on
            await asyncio.wait_for(delivering, _left(loop, deadline) + 1)
    overdue.cancel()
    log.info("stopped", pid=os.getpid())
    return 0


def _left(loop: asyncio.AbstractEventLoop, deadline: float) -> float:
    return max(0.0, deadline - loop.time())


class _Supervisor:
    def __init__(
        self,
        config: ServeConfig,
        mllp: socket.socket | None,
        http: list[socket.socket | None],
        ready: Path | None,
        delivery: DeliveryOptions | None = None,
    ) -> None:
        self.config = config
        self.delivery = delivery
        self.mllp = mllp
        self.http = http  # one per process slot, kept open across restarts
        self.ready = ready
        self.children: dict[int, int] = {}  # pid -> slot
        self.channels: dict[int, socket.socket] = {}  # slot -> our end of its socket pair
        self.connections = [0] * len(http)  # MLLP connections handed to each slot
        self.selector = selectors.DefaultSelector()
        self.stopping = False

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        for slot in range(len(self.http)):
            self._spawn(slot)
        if self.mllp is not None:
            self.selector.register(self.mllp, selectors.EVENT_READ, -1)
        if self.ready is not None:
            _write_ready(self.ready, self._listening(0))
        log.info("supervising", processes=sorted(self.children), **self._listening(0).ports)
        deadline = math.inf
        while self.children:
            if self.stopping and deadline == math.inf:
                deadline = time.monotonic() + self.config.shutdown_timeout + 5
                self._stop_accepting()
                self._signal_all(signal.SIGTERM)
            if time.monotonic() > deadline:
                log.error("stop_timeout", processes=sorted(self.children))
                self._signal_all(signal.SIGKILL)
            for key, _ in self.selector.select(timeout=0.1):
                if key.data == -1:
                    self._accept()
                else:
                    self._ended(int(key.data))
            self._reap()
        log.info("stopped")
        return 0

    def _accept(self) -> None:
        """Each waiting MLLP connection to the process with the fewest."""
        assert self.mllp is not None
        for _ in range(64):
            try:
                connection, _address = self.mllp.accept()
            except (BlockingIOError, InterruptedError):
                return
            with connection:
                if sum(self.connections) >= self.config.max_connections:
                    log.warning("connection_refused", reason="too many connections")
                    continue
                slot = min(self.channels, key=self.connections.__getitem__)
                try:
                    socket.send_fds(self.channels[slot], [b"c"], [connection.fileno()])
                except OSError:  # the process is going: the client will connect again
                    continue
                self.connections[slot] += 1

    def _ended(self, slot: int) -> None:
        channel = self.channels[slot]
        try:
            data = channel.recv(4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if data:
            self.connections[slot] = max(0, self.connections[slot] - len(data))
            return
        self.selector.unregister(channel)  # the process is gone
        channel.close()
        del self.channels[slot]
        self.connections[slot] = 0

    def _reap(self) -> None:
        while self.children:
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                return
            slot = self.children.pop(pid)
            mark_dead(pid)
            if slot in self.channels:
                self.selector.unregister(self.channels[slot])
                self.channels.pop(slot).close()
                self.connections[slot] = 0
            if not self.stopping:
                log.error("process_died", pid=pid, status=status)
                try:
                    recovered = _recover(self.config, [pid])
                except ConnectionError as exc:  # the broker: its messages stay received
                    log.error("recovery_failed", reason=str(exc))
                    recovered = 0
                log.warning("process_replaced", pid=pid, recovered=recovered)
                self._spawn(slot)

    def _stop(self, _signum: int, _frame: object) -> None:
        self.stopping = True

    def _stop_accepting(self) -> None:
        if self.mllp is not None:
            self.selector.unregister(self.mllp)
            self.mllp.close()
            self.mllp = None

    def _signal_all(self, number: signal.Signals) -> None:
        for pid in self.children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, number)

    def _listening(self, slot: int, channel: socket.socket | None = None) -> Listening:
        port = self.mllp.getsockname()[1] if self.mllp is not None else 0
        return Listening(None, self.http[slot], channel if port else None, port)

    def _spawn(self, slot: int) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        listening = self._listening(slot, theirs)
        pid = os.fork()
        if pid:
            theirs.close()
            ours.setblocking(False)
            self.children[pid] = slot
            self.channels[slot] = ours
            self.selector.register(ours, selectors.EVENT_READ, slot)
            return
        code = 1
        try:  # the child: die with the supervisor, handle its own signals, keep its sockets
            _die_with_parent()
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            self.selector.close()
            ours.close()
            for sock in (self.mllp, *self.channels.values(), *self.http):
                if sock is not None and sock is not listening.http:
                    sock.close()
            code = asyncio.run(
                run_process(
                    self.config,
                    listening,
                    upkeep=slot == 0,
                    delivery=self.delivery if slot == 0 else None,
                )
            )
        finally:
            os._exit(code)


def _die_with_parent() -> None:
    try:  # Linux: SIGKILL this process when the supervisor dies
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        return
    if os.getppid() == 1:  # pragma: no cover - the supervisor died before prctl
        os._exit(1)


def _bind_all(address: str, count: int) -> list[socket.socket | None]:
    """``count`` listening sockets on one port (the first one picks it when it is 0)."""
    host, port = parse_address(address)
    sockets: list[socket.socket | None] = []
    for _ in range(count):
        sock = _bind(host, port, shared=count > 1)
        port = sock.getsockname()[1]
        sockets.append(sock)
    return sockets


def _bind(host: str, port: int, *, shared: bool) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets that say TCP, and
    # without it a keep-alive response waits ~40 ms (Nagle against the peer's delayed ACK)
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if shared:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(512)
    sock.setblocking(False)
    return sock


def _write_ready(path: Path, listening: Listening) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(listening.ports), encoding="utf-8")
    temporary.replace(path)

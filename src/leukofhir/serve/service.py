"""``leukofhir serve``: journal, sink, engine and listeners wired together, and stopped in
order on SIGTERM/SIGINT: stop accepting (MLLP and HTTP), finish and acknowledge what is in
hand, then close the pool and the journal."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import socket
from collections.abc import Iterator
from pathlib import Path

import uvicorn

from leukofhir.logs import get_logger
from leukofhir.serve.config import ServeConfig, parse_address
from leukofhir.serve.http_app import HttpSettings, build_app
from leukofhir.serve.intake import Intake
from leukofhir.serve.journal import Journal
from leukofhir.serve.metrics import Metrics
from leukofhir.serve.mllp_server import MllpListener, MllpSettings
from leukofhir.serve.sink import FolderSink, Sink, StdoutSink
from leukofhir.serve.work import ProcessorConfig

__all__ = ["run_service", "serve"]

log = get_logger("leukofhir.serve")


class _Uvicorn(uvicorn.Server):
    """uvicorn inside our loop: the service owns the signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def serve(config: ServeConfig, *, ready_file: Path | None = None) -> int:
    """Run until SIGTERM/SIGINT; 0 after a clean stop."""
    return asyncio.run(run_service(config, ready_file=ready_file))


async def run_service(
    config: ServeConfig,
    *,
    ready_file: Path | None = None,
    stop: asyncio.Event | None = None,
) -> int:
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for number in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(number, stop.set)
    journal = Journal(config.out, durable=config.journal_sync == "full")
    sink: Sink = (
        FolderSink(config.out, fsync=config.fsync) if config.sink == "folder" else StdoutSink()
    )
    metrics = Metrics()
    intake = Intake(
        journal,
        sink,
        ProcessorConfig(
            mappings=tuple(str(m) for m in config.mappings),
            timezone=config.timezone,
            validate_structure=config.validate_structure,
            validate_output=config.validate_output,
        ),
        workers=config.workers,
        metrics=metrics,
    )
    await intake.start()
    await intake.warm_up()
    ports: dict[str, int] = {}
    mllp: MllpListener | None = None
    if config.mllp != "off":
        host, port = parse_address(config.mllp)
        mllp = MllpListener(
            intake,
            MllpSettings(
                host,
                port,
                config.max_frame,
                config.max_connections,
                config.idle_timeout,
                config.mllp_release,
            ),
            metrics,
        )
        await mllp.start()
        ports["mllp"] = mllp.port
    http: _Uvicorn | None = None
    http_task: asyncio.Task[None] | None = None
    if config.http != "off":
        host, port = parse_address(config.http)
        settings = HttpSettings(host, port, config.http_max_body, config.token)
        app = build_app(intake, settings, metrics, stopping=stop.is_set)
        listening = _bind(host, port)
        ports["http"] = listening.getsockname()[1]
        http = _Uvicorn(
            uvicorn.Config(
                app,
                log_config=None,
                access_log=False,
                lifespan="off",
                timeout_graceful_shutdown=int(config.shutdown_timeout) or None,
            )
        )
        http_task = asyncio.create_task(http.serve(sockets=[listening]))
        log.info("listening", protocol="http", host=host, port=ports["http"])
    if ready_file is not None:
        ready_file.write_text(json.dumps(ports), encoding="utf-8")
    log.info("ready", **ports, workers=config.workers, out=str(config.out))
    await stop.wait()
    log.info("stopping", in_progress=intake.busy)
    if mllp is not None:
        await mllp.close(config.shutdown_timeout)
    if http is not None and http_task is not None:
        http.should_exit = True
        await http_task
    await intake.close(config.shutdown_timeout)
    log.info("stopped", messages=sum(journal_counts(config.out).values()))
    return 0


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets that say TCP, and
    # without it a keep-alive response waits ~40 ms (Nagle against the peer's delayed ACK)
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    sock.setblocking(False)
    return sock


def journal_counts(out: Path) -> dict[str, int]:
    """Messages in the journal by outcome (read-only, after the service closed it)."""
    journal = Journal(out)
    try:
        return dict(journal.counts())
    finally:
        journal.close()

"""An in-process service (engine + MLLP listener on 127.0.0.1, port chosen by the OS) and a
minimal raw MLLP peer, for tests that need to see every byte; and the real ``leukofhir
serve`` as a subprocess (:func:`service`)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from leukofhir.context import Settings
from leukofhir.ingest.mllp import MllpFramer, frame
from leukofhir.serve.intake import Intake
from leukofhir.serve.journal import Journal
from leukofhir.serve.metrics import Metrics
from leukofhir.serve.mllp_server import MllpListener, MllpSettings
from leukofhir.serve.sink import FolderSink
from leukofhir.serve.work import Job, Processed, Processor
from tests.conftest import ROOT, SAMPLES

TIMEOUT = 10.0
TIMEOUT_PROCESS = 20.0  # any one wait on a subprocess


@dataclass
class Running:
    intake: Intake
    listener: MllpListener
    out: Path
    metrics: Metrics

    @property
    def port(self) -> int:
        return self.listener.port


@contextlib.asynccontextmanager
async def running(
    out: Path, engine: Settings | None = None, **settings: object
) -> AsyncIterator[Running]:
    """One service process as ``leukofhir serve --workers 1`` runs it (``engine``: what its
    context is built from): what a previous run left is finished first, then the listener
    starts."""
    metrics = Metrics()
    intake = Intake(
        Journal(out, durable=False), FolderSink(out), engine or Settings(), metrics=metrics
    )
    intake.recover()
    listener = MllpListener(intake, MllpSettings(port=0, **settings), metrics)  # type: ignore[arg-type]
    await listener.start()
    try:
        yield Running(intake, listener, out, metrics)
    finally:
        await listener.close(5.0)
        await intake.close(5.0)


@dataclass
class Peer:
    """A raw MLLP connection: write any bytes, read whole frames."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    framer: MllpFramer = field(default_factory=MllpFramer)
    frames: list[bytes] = field(default_factory=list)

    @classmethod
    async def open(cls, port: int) -> Peer:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def send(self, *messages: bytes) -> None:
        self.writer.write(b"".join(frame(m) for m in messages))
        await self.writer.drain()

    async def raw(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def receive(self, count: int = 1) -> list[bytes]:
        """The next ``count`` frames (fails the test after TIMEOUT)."""
        async with asyncio.timeout(TIMEOUT):
            while len(self.frames) < count:
                data = await self.reader.read(65536)
                if not data:
                    raise ConnectionError(f"closed after {len(self.frames)} of {count} frames")
                self.frames.extend(self.framer.feed(data))
        taken, self.frames = self.frames[:count], self.frames[count:]
        return taken

    async def closed(self) -> bool:
        """True when the server closes the connection (EOF) within TIMEOUT."""
        async with asyncio.timeout(TIMEOUT):
            while data := await self.reader.read(65536):
                self.frames.extend(self.framer.feed(data))
        return True

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


class Poisoned:
    """``Processor.run_one`` raising ``error`` on every message holding ``POISON`` while
    ``active`` (a fault of ours, whatever the core does with that message); counts them."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, error: BaseException | None = None) -> None:
        self.calls = 0
        self.active = True
        original = Processor.run_one

        def run_one(processor: Processor, job: Job, *args: Any, **kwargs: Any) -> Processed:
            if self.active and b"POISON" in job.data:
                self.calls += 1
                raise error or KeyError("R4.FooType")
            return original(processor, job, *args, **kwargs)

        monkeypatch.setattr(Processor, "run_one", run_one)


def mllp_exchange(port: int, message: bytes, timeout: float = TIMEOUT) -> bytes:
    """Send one framed message on a new connection, read one ACK frame."""
    framer = MllpFramer()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(frame(message))
        while True:
            data = sock.recv(65536)
            assert data, "closed without an ACK"
            if acks := framer.feed(data):
                return acks[0]


def sample(name: str) -> bytes:
    return (SAMPLES / name).read_bytes()


def field_of(message: bytes, segment: str, number: int) -> str:
    """A field of the first ``segment`` (MSH counted as the standard does)."""
    for line in message.replace(b"\r\n", b"\r").replace(b"\n", b"\r").split(b"\r"):
        if line.startswith(segment.encode()):
            fields = line.decode("utf-8", "replace").split("|")
            index = number - 1 if segment == "MSH" else number
            return fields[index] if index < len(fields) else ""
    return ""


def outputs(out: Path) -> list[str]:
    return sorted(
        str(p.relative_to(out))
        for p in out.rglob("*")
        if p.is_file() and not p.name.startswith("journal.sqlite")
    )


# -- the real service as a subprocess ---------------------------------------------------------


@dataclass
class Service:
    process: subprocess.Popen[bytes]
    mllp: int
    http: int
    out: Path
    log: Path

    def stop(self) -> str:
        """SIGTERM (unless it already stopped); the service must exit 0 within 10 seconds,
        without a traceback, its last log line ``stopped``."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(10)
        finally:
            reap(self.process)
        text = self.log.read_text(encoding="utf-8", errors="replace")
        assert code == 0, text[-3000:]
        assert "Traceback" not in text, text[-3000:]
        events = [json.loads(line)["event"] for line in text.splitlines() if line.startswith("{")]
        assert events[-1] == "stopped", events[-5:]
        return text


def reap(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.kill()
        process.wait(10)


def environment(extra_path: Sequence[Path] = ()) -> dict[str, str]:
    """The environment for a leukofhir subprocess: no LEUKOFHIR_ settings of ours, this
    tree's sources first (``extra_path`` before them)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEUKOFHIR_")}
    paths = (*map(str, extra_path), str(ROOT / "src"), os.environ.get("PYTHONPATH", ""))
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    return env


def wait_until(condition: object, what: str, process: subprocess.Popen[bytes], log: Path) -> None:
    """Poll ``condition()`` until true; fail (with the process's log) after TIMEOUT_PROCESS
    or if the process exits."""
    assert callable(condition)
    deadline = time.monotonic() + TIMEOUT_PROCESS
    while not condition():
        if process.poll() is not None:
            pytest.fail(
                f"{what}: the process exited {process.returncode}: {log.read_text()[-3000:]}"
            )
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {TIMEOUT_PROCESS} s: {log.read_text()[-3000:]}")
        time.sleep(0.02)


@contextlib.contextmanager
def service(
    folder: Path,
    options: Sequence[str] = ("--shutdown-timeout", "5"),
    env: Mapping[str, str] | None = None,
) -> Iterator[Service]:
    """``leukofhir serve --workers 1`` on free ports with OUT ``folder/out``; stopped (and
    checked: exit 0, no traceback) at the end unless the test stopped it."""
    folder.mkdir(parents=True, exist_ok=True)
    out, ready, log = folder / "out", folder / "ready.json", folder / "service.log"
    ready.unlink(missing_ok=True)
    with log.open("ab") as stderr:
        process = subprocess.Popen(
            [
                *(sys.executable, "-m", "leukofhir.cli", "--log-format", "json", "serve"),
                *("--out", str(out), "--workers", "1", "--ready-file", str(ready)),
                *("--mllp", "127.0.0.1:0", "--http", "127.0.0.1:0", *options),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            env=dict(env) if env is not None else environment(),
            cwd=folder,
        )
    try:
        ports: dict[str, int] = {}

        def listening() -> bool:
            with contextlib.suppress(OSError, ValueError):
                ports.update(json.loads(ready.read_text()))
            return {"mllp", "http"} <= ports.keys()

        wait_until(listening, "ready file", process, log)
        running = Service(process, ports["mllp"], ports["http"], out, log)
        yield running
        if process.poll() is None:
            running.stop()
    finally:
        reap(process)

"""An in-process service (engine + MLLP listener on 127.0.0.1, port chosen by the OS) and a
minimal raw MLLP peer, for tests that need to see every byte."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from leukofhir.context import Settings
from leukofhir.ingest.mllp import MllpFramer, frame
from leukofhir.serve.intake import Intake
from leukofhir.serve.journal import Journal
from leukofhir.serve.metrics import Metrics
from leukofhir.serve.mllp_server import MllpListener, MllpSettings
from leukofhir.serve.sink import FolderSink
from tests.conftest import SAMPLES

TIMEOUT = 10.0


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
async def running(out: Path, **settings: object) -> AsyncIterator[Running]:
    """One service process as ``leukofhir serve --workers 1`` runs it: what a previous run
    left is finished first, then the listener starts."""
    metrics = Metrics()
    intake = Intake(Journal(out, durable=False), FolderSink(out), Settings(), metrics=metrics)
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

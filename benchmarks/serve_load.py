"""Load and fault drivers shared by the service benchmark and its load tests: the real
service as a subprocess, and MLLP senders that can disconnect mid-frame, lose ACKs and
re-send."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from leukofhir.ingest.mllp import MllpFramer, frame

from generate import generate_messages

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"

__all__ = ["Sender", "Server", "control_id", "generate_messages", "msa"]


class Server:
    """``leukofhir serve`` in a subprocess on 127.0.0.1 (ports chosen by the OS)."""

    def __init__(self, out: Path, *args: str) -> None:
        self.out = out
        self.args = args
        self.process: subprocess.Popen[bytes] | None = None
        self.ports: dict[str, int] = {}
        self.stderr = out.parent / f"{out.name}.stderr"

    def start(self, timeout: float = 30.0) -> dict[str, int]:
        ready = self.out.parent / f"{self.out.name}.ready"
        ready.unlink(missing_ok=True)
        env = {**os.environ, "PYTHONPATH": str(SRC)}
        with open(self.stderr, "ab") as log:
            self.process = subprocess.Popen(
                [
                    *(sys.executable, "-m", "leukofhir.cli", "--log-format", "json", "serve"),
                    *("--out", str(self.out), "--ready-file", str(ready)),
                    *("--mllp", "127.0.0.1:0", "--http", "127.0.0.1:0", *self.args),
                ],
                stdout=subprocess.DEVNULL,
                stderr=log,
                env=env,
            )
        deadline = time.monotonic() + timeout
        while not ready.exists() or not ready.read_text():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the service did not start: {self.stderr.read_text()[-2000:]}")
            time.sleep(0.05)
        self.ports = json.loads(ready.read_text())
        return self.ports

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self, timeout: float = 30.0) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def __enter__(self) -> Server:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


def control_id(message: bytes) -> str:
    return message.split(b"\r", 1)[0].split(b"|")[9].decode()


def msa(ack: bytes) -> tuple[str, str]:
    for line in ack.split(b"\r"):
        if line.startswith(b"MSA|"):
            fields = line.decode().split("|")
            return fields[1], fields[2]
    return "", ""


@dataclass
class Sender:
    """Sends its messages one by one, each until it gets an ACK; with ``chaos`` it also
    disconnects mid-frame, drops the connection before reading an ACK (a lost ACK) and
    re-sends messages that were already acknowledged."""

    port: Callable[[], int]
    messages: Sequence[bytes]
    seed: int
    chaos: float = 0.0
    acks: dict[str, list[str]] = field(default_factory=dict)  # MSH-10 -> MSA-1 received
    latencies: list[float] = field(default_factory=list)
    reconnects: int = 0

    async def run(self, deadline: float) -> None:
        rng = random.Random(self.seed)
        connection: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        framer = MllpFramer()
        index = 0
        while index < len(self.messages):
            if time.monotonic() > deadline:
                raise TimeoutError(f"sender {self.seed} stuck at message {index}")
            message = self.messages[index]
            try:
                if connection is None:
                    connection = await asyncio.open_connection("127.0.0.1", self.port())
                    framer = MllpFramer()
                reader, writer = connection
                roll = rng.random()
                if roll < self.chaos:  # half a frame, then hang up
                    writer.write(frame(message)[: len(message) // 2])
                    await writer.drain()
                    await _close(writer)
                    connection, self.reconnects = None, self.reconnects + 1
                    continue
                started = time.perf_counter()
                writer.write(frame(message))
                await writer.drain()
                if roll < 2 * self.chaos:  # the ACK is lost: hang up before reading it
                    await _close(writer)
                    connection, self.reconnects = None, self.reconnects + 1
                    continue
                ack = await _one_frame(reader, framer)
                self.latencies.append(time.perf_counter() - started)
                code, echoed = msa(ack)
                if echoed != control_id(message):
                    raise AssertionError(f"ACK for {echoed!r} answers {control_id(message)!r}")
                self.acks.setdefault(echoed, []).append(code)
                if code == "AR":  # not accepted: send it again later
                    await asyncio.sleep(0.05)
                    continue
                if roll < 3 * self.chaos:  # re-send an acknowledged message
                    continue
                index += 1
            except (ConnectionError, OSError, asyncio.IncompleteReadError):
                if connection is not None:
                    await _close(connection[1])
                connection, self.reconnects = None, self.reconnects + 1
                await asyncio.sleep(0.05)
        if connection is not None:
            await _close(connection[1])


async def _one_frame(reader: asyncio.StreamReader, framer: MllpFramer) -> bytes:
    async with asyncio.timeout(30):
        while True:
            data = await reader.read(65536)
            if not data:
                raise ConnectionResetError("closed before the ACK")
            frames = framer.feed(data)
            if frames:
                return frames[0]


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(ConnectionError, OSError):
        await writer.wait_closed()

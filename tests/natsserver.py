"""A throw-away NATS server with JetStream for the tests and the benchmarks: Debian's
``nats-server`` (``.ci/run`` installs it when it is missing) on 127.0.0.1 and a free port,
its store in a temporary folder; stopped and started again on the same port and store
(a broker that goes away and comes back)."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from tests.pgcluster import free_port

__all__ = ["NatsServer", "free_port", "nats_server", "unavailable"]

START_TIMEOUT = 20.0


def binary() -> str | None:
    return shutil.which("nats-server") or (
        "/usr/sbin/nats-server" if Path("/usr/sbin/nats-server").is_file() else None
    )


def unavailable() -> str:
    """Why no server can start here ('' when one can)."""
    if binary() is None:
        return "nats-server is not installed (Debian package nats-server)"
    try:
        import nats  # noqa: F401
    except ImportError:
        return "nats-py is not installed (pip install 'leukofhir[nats]')"
    return ""


class NatsServer:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        command = [binary() or "nats-server", "-js", "-a", "127.0.0.1", "-p", str(self.port)]
        command += ["-sd", str(self.folder / "store")]
        with (self.folder / "nats.log").open("ab") as log:
            self.process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=log, stderr=log
            )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock,
            ):
                if sock.recv(4).startswith(b"INFO"):
                    return
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError(f"nats-server did not start: {(self.folder / 'nats.log').read_text()}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.process = None


@contextlib.contextmanager
def nats_server() -> Iterator[NatsServer]:
    with tempfile.TemporaryDirectory(prefix="leukofhir-nats-") as folder:
        server = NatsServer(Path(folder))
        server.start()
        try:
            yield server
        finally:
            server.stop()

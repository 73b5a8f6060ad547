"""A throw-away PostgreSQL cluster for the tests and the benchmarks: ``initdb`` in a temporary
folder, ``postgres`` on 127.0.0.1 and a free port (no Unix socket), trust authentication,
removed at the end.

The binaries come from ``$PG_BINDIR``, ``pg_config --bindir``, the newest
``/usr/lib/postgresql/*/bin`` (Debian's ``postgresql`` package) or ``PATH``.  PostgreSQL
refuses to run as root: as root, the cluster runs as the ``postgres`` user that Debian's
package creates.  :func:`unavailable` says why a cluster cannot start here (the tests skip
with that reason); ``.ci/run`` installs the package when it is missing.
"""

from __future__ import annotations

import contextlib
import glob
import importlib.util
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

START_TIMEOUT = 60.0
USER = "leukofhir"
_FAST = ("-E", "UTF8", "--no-locale", "--no-sync")


def bindir() -> Path | None:
    """The folder of ``initdb`` and ``postgres``, or None."""
    candidates = [os.environ.get("PG_BINDIR", "")]
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        candidates.append(
            subprocess.run(
                ["pg_config", "--bindir"], capture_output=True, text=True, check=True
            ).stdout.strip()
        )
    versions = [p for p in glob.glob("/usr/lib/postgresql/*/bin") if Path(p).parent.name.isdigit()]
    candidates += sorted(versions, key=lambda p: int(Path(p).parent.name), reverse=True)
    found = shutil.which("initdb")
    candidates.append(str(Path(os.path.realpath(found)).parent) if found else "")
    for folder in filter(None, candidates):
        if (Path(folder) / "initdb").is_file() and (Path(folder) / "postgres").is_file():
            return Path(folder)
    return None


def _runner() -> pwd.struct_passwd | None:
    """The user the server runs as when we are root (None: ourselves)."""
    if os.geteuid() != 0:
        return None
    return pwd.getpwnam("postgres")


def unavailable() -> str:
    """Why no cluster can start here ('' when one can)."""
    if importlib.util.find_spec("psycopg") is None:
        return "psycopg is not installed (pip install 'leukofhir[postgres]')"
    if bindir() is None:
        return "PostgreSQL's initdb/postgres are not installed (Debian: apt-get install postgresql)"
    try:
        _runner()
    except KeyError:
        return "running as root and there is no 'postgres' user to run PostgreSQL as"
    return ""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Cluster:
    """One running cluster; :meth:`url` names a database in it, :meth:`create` makes one."""

    def __init__(self, folder: Path, port: int, process: subprocess.Popen[bytes]) -> None:
        self.folder, self.port, self.process = folder, port, process

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{database}"

    def create(self, database: str) -> str:
        """A new empty database; its URL."""
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as db:
            db.execute(f'CREATE DATABASE "{database}"')  # type: ignore[arg-type]
        return self.url(database)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()  # SIGTERM: smart shutdown, clients are gone by now
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@contextlib.contextmanager
def cluster(*, durable: bool = False) -> Iterator[Cluster]:
    """A cluster for the duration of the block; without ``durable``, fsync is off (the tests
    kill clients, never the server)."""
    binaries = bindir()
    assert binaries is not None, unavailable()
    runner = _runner()
    as_user: dict[str, Any] = {}
    folder = Path(tempfile.mkdtemp(prefix="leukofhir-pg-"))
    if runner is not None:
        os.chown(folder, runner.pw_uid, runner.pw_gid)
        as_user = {"user": runner.pw_uid, "group": runner.pw_gid, "extra_groups": []}
    data = folder / "data"
    log = folder / "server.log"
    env = {**os.environ, "LC_ALL": "C", "TZ": "UTC"}
    try:
        subprocess.run(
            [str(binaries / "initdb"), "-D", str(data), "-U", USER, "--auth=trust", *_FAST],
            check=True,
            capture_output=True,
            env=env,
            cwd=folder,
            **as_user,
        )
        port = free_port()
        settings = ["listen_addresses=127.0.0.1", "unix_socket_directories=", "max_connections=40"]
        if not durable:
            settings += ["fsync=off", "synchronous_commit=off", "full_page_writes=off"]
        with open(log, "wb") as out:
            process = subprocess.Popen(
                [str(binaries / "postgres"), "-D", str(data), "-p", str(port)]
                + [arg for setting in settings for arg in ("-c", setting)],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=folder,
                **as_user,
            )
        running = Cluster(folder, port, process)
        try:
            _wait(running, log)
            yield running
        finally:
            running.stop()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _wait(running: Cluster, log: Path) -> None:
    import psycopg

    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if running.process.poll() is not None:
            raise RuntimeError(f"postgres exited: {log.read_text(errors='replace')[-2000:]}")
        try:
            psycopg.connect(running.url(), connect_timeout=2).close()
            return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)

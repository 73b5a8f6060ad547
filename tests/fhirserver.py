"""The shared test FHIR server (../shared/tools/fhir-server: Medplum's FHIR router on an
in-memory store, on 127.0.0.1) as a context manager, and a way to compare what two servers
hold.

Skipped where ../shared/tools is absent; where it is present but fhir-server-setup never
ran, skipped locally and failed in CI (CI=true: .ci/run sets it up).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import GOLDEN, SHARED

TOOL = SHARED / "tools" / "fhir-server"
INSTALLED = Path(
    os.environ.get("FHIRSRV_DIR")
    or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "fhirsrv"
)
START_TIMEOUT = 60.0


def require_server() -> None:
    """Skip (or fail in CI) when the server cannot run here."""
    if not TOOL.exists():
        pytest.skip("../shared/tools/fhir-server is not here")
    if not (INSTALLED / "node_modules" / "@medplum" / "fhir-router").exists():
        if os.environ.get("CI"):
            pytest.fail("fhir-server is not set up: .ci/run must run fhir-server-setup")
        pytest.skip("fhir-server is not set up (run ../shared/tools/fhir-server-setup)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class FhirServer:
    """One fhir-server process; ``base`` is its FHIR base URL."""

    def __init__(self, folder: Path, *options: str, port: int = 0) -> None:
        self.folder = folder
        self.options = options
        self.port = port
        self.base = ""
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def root(self) -> str:
        return self.base.removesuffix("/fhir/R4")

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        ready = self.folder / f"ready-{self.port}-{time.monotonic_ns()}"
        with open(self.folder / "server.stderr", "ab") as stderr:
            self._process = subprocess.Popen(
                [str(TOOL), "--host", "127.0.0.1", "--port", str(self.port)]  # noqa: RUF005
                + ["--ready-file", str(ready), *self.options],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while not (ready.exists() and ready.read_text().strip()):
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"fhir-server did not start: {self.stderr()[-2000:]}")
            time.sleep(0.02)
        self.base = ready.read_text().strip()

    def stop(self) -> None:
        if self._process is None:
            return
        if self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None

    def stderr(self) -> str:
        path = self.folder / "server.stderr"
        return path.read_text(errors="replace") if path.exists() else ""

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = httpx.get(f"{self.root}/$counts", timeout=30).json()
        return counts

    def dump(self) -> list[dict[str, Any]]:
        text = httpx.get(f"{self.root}/$dump", timeout=60).text
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def reset(self) -> None:
        httpx.post(f"{self.root}/$reset", timeout=30).raise_for_status()


@contextlib.contextmanager
def running_server(folder: Path, *options: str, port: int = 0) -> Iterator[FhirServer]:
    require_server()
    server = FhirServer(folder, *options, port=port)
    server.start()
    try:
        yield server
    finally:
        server.stop()


# ---------------------------------------------------------------- documents


def sample_bundles() -> list[bytes]:
    """The transaction Bundles of every sample output (golden files, in file order).  Each
    stands on its own (every reference points into it or names its target by identifier),
    so each loads into an empty server."""
    bundles: list[bytes] = []
    for path in sorted(GOLDEN.glob("*.ndjson")):
        for line in path.read_bytes().splitlines():
            if json.loads(line)["resourceType"] == "Bundle":
                bundles.append(line)
    return bundles


_LITERAL = re.compile(rb'"reference":"(?!urn:)[A-Z][A-Za-z]+/')


def source_bundles() -> list[bytes]:
    """The FHIR-input samples written back for the server they came from
    (``--fhir-target source``, each file settled alone): those that name that server's
    resources by id (``Patient/lakeside-p1001``), which an empty server refuses with 400.
    A document the server refuses for good, on purpose."""
    from leukofhir.emit.jsonio import dumps
    from leukofhir.lifecycle.settle import settle_message
    from leukofhir.lifecycle.store import MemoryStore
    from leukofhir.pipeline import process
    from tests.conftest import SAMPLES, make_context

    context = make_context(fhir_target="source")
    bundles: list[bytes] = []
    for path in sorted(SAMPLES.glob("f*.*json")):
        store = MemoryStore()
        for outcome in process(path.read_bytes(), context):
            settled, states = settle_message(outcome, store.load, context.rule_set)
            store.save(states)
            for document in settled.documents():
                line = dumps(document)
                if document["resourceType"] == "Bundle" and _LITERAL.search(line):
                    bundles.append(line)
    return bundles


# ---------------------------------------------------------------- comparing servers

_SERVER_REF = re.compile(
    r"\b([A-Z][A-Za-z]+)/([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\b"
)


def canonical(
    resources: list[dict[str, Any]], *, leave_out: frozenset[str] = frozenset()
) -> list[str]:
    """What a server holds, without what the server chose: ids, meta, and the server ids in
    references (replaced by the target's identifiers, or its content for a resource without
    one).  Sorted: equal lists mean the same resources, each as many times."""
    labels: dict[str, str] = {}
    for resource in resources:
        identifiers = sorted(
            f"{i.get('system', '')}|{i.get('value', '')}" for i in resource.get("identifier", [])
        )
        if identifiers:
            labels[f"{resource['resourceType']}/{resource['id']}"] = (
                f"{resource['resourceType']}{identifiers}"
            )
    normalised = {id(r): _normalise(r, labels) for r in resources}
    for resource in resources:
        reference = f"{resource['resourceType']}/{resource['id']}"
        if reference not in labels:
            digest = hashlib.sha256(
                json.dumps(normalised[id(resource)], sort_keys=True).encode()
            ).hexdigest()[:12]
            labels[reference] = f"{resource['resourceType']}#{digest}"
    return sorted(
        json.dumps(_normalise(r, labels), sort_keys=True)
        for r in resources
        if r["resourceType"] not in leave_out
    )


def _normalise(value: Any, labels: dict[str, str]) -> Any:
    if isinstance(value, dict):
        return {
            key: _normalise(item, labels)
            for key, item in value.items()
            if key not in {"id", "meta"}
        }
    if isinstance(value, list):
        return [_normalise(item, labels) for item in value]
    if isinstance(value, str):
        return _SERVER_REF.sub(lambda m: labels.get(m.group(), "<unresolved>"), value)
    return value

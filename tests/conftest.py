"""Shared fixtures: a fixed clock and the packaged knowledge, so outputs are reproducible."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from leukofhir.context import Context
from leukofhir.rules import load_rule_set
from leukofhir.terminology import load_terminology

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "sample_messages"
GOLDEN = ROOT / "tests" / "golden"
SHARED = ROOT.parent / "shared"
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def make_context(**overrides: object) -> Context:
    options: dict[str, object] = {
        "now": NOW,
        "terminology": load_terminology(),
        "rule_set": load_rule_set(),
    }
    options.update(overrides)
    return Context(**options)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def context() -> Context:
    return make_context()


@pytest.fixture
def unix_socket() -> Iterator[Path]:
    """A bound Unix socket (a path that is no file), at a short path: sun_path is small."""
    path = Path(f"/tmp/leukofhir-test-{os.getpid()}.sock")
    path.unlink(missing_ok=True)
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    try:
        yield path
    finally:
        server.close()
        path.unlink(missing_ok=True)

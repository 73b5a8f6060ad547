"""Shared fixtures: a fixed clock and the packaged knowledge, so outputs are reproducible."""

from __future__ import annotations

import itertools
import os
import socket
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from leukofhir.context import Context
from leukofhir.lifecycle.settle import settle_message
from leukofhir.lifecycle.store import MemoryStore, StateStore
from leukofhir.pipeline import MessageOutcome, process
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


def settled(
    messages: Iterable[bytes], context: Context, store: StateStore | None = None
) -> Iterator[MessageOutcome]:
    """Each message's outcomes settled in order against the patients' states (``replay``)."""
    store = MemoryStore() if store is None else store
    for data in messages:
        for outcome in process(data, context):
            done, states = settle_message(outcome, store.load, context.rule_set)
            store.save(states)
            yield done


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


_DATABASES = itertools.count()


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[object]:
    """One throw-away PostgreSQL cluster for the session (tests/pgcluster.py); skipped with
    the reason when PostgreSQL or psycopg is not here."""
    from tests import pgcluster

    reason = pgcluster.unavailable()
    if reason:
        pytest.skip(reason)
    with pgcluster.cluster() as running:
        yield running


@pytest.fixture
def postgres_url(postgres_cluster: object, request: pytest.FixtureRequest) -> str:
    """The URL of a new empty database in the session's cluster."""
    from tests.pgcluster import Cluster

    assert isinstance(postgres_cluster, Cluster)
    name = "".join(c if c.isalnum() else "_" for c in request.node.name.lower())[:40]
    return postgres_cluster.create(f"t{next(_DATABASES)}_{name}")


@pytest.fixture(scope="session")
def nats_url() -> Iterator[str]:
    """One NATS server with JetStream for the session (tests/natsserver.py); skipped with
    the reason when nats-server or nats-py is not here.  Tests use streams of their own."""
    from tests import natsserver

    reason = natsserver.unavailable()
    if reason:
        pytest.skip(reason)
    with natsserver.nats_server() as server:
        yield server.url

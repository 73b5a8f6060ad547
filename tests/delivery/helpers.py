"""Documents and one call that delivers an outbox to a server, for the delivery tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

import httpx
import orjson

from leukofhir.delivery import (
    PROFILES,
    Deliverer,
    DeliveryStats,
    Document,
    FhirServer,
    RetryPolicy,
    RunSummary,
    ServerProfile,
    SqliteOutbox,
    Token,
    TransactionClient,
    patient_key,
)
from leukofhir.delivery.deliverer import Hook
from tests.fhirserver import sample_bundles, source_bundles

SAMPLES = sample_bundles()  # every one loads into an empty server
SOURCE = source_bundles()  # each names a source server's resource: 400 from an empty server
DOCS = SAMPLES[:16]  # 16 Bundles of 15 patients (one has two reports)
FHIR_JSON = {"Content-Type": "application/fhir+json"}
FAST = RetryPolicy(base=0.05, cap=0.5, retry_for=120)


def documents(datas: Sequence[bytes], *, start: int = 0) -> list[Document]:
    """Keyed ``doc000``...; ordered by patient as the wiring will do it."""
    return [
        Document(f"doc{n:03d}", patient_key(orjson.loads(data)) or f"doc{n:03d}", n, data)
        for n, data in enumerate(datas, start)
    ]


def deliver(
    outbox: SqliteOutbox,
    base: str,
    *,
    token: Token | None = None,
    timeout: float = 30.0,
    concurrency: int = 4,
    profile: ServerProfile = PROFILES["default"],
    policy: RetryPolicy = FAST,
    stats: DeliveryStats | None = None,
    hooks: Sequence[Hook] = (),
    transport: httpx.AsyncBaseTransport | None = None,
) -> RunSummary:
    """Deliver until nothing is left to try (or delivery stops)."""
    stats = stats or DeliveryStats()
    server = FhirServer(base, token=token, timeout=timeout, connections=concurrency)

    async def run() -> RunSummary:
        async with TransactionClient(server, observe=stats.observe, transport=transport) as client:
            deliverer = Deliverer(
                outbox,
                client.post,
                profile=profile,
                policy=policy,
                concurrency=concurrency,
                hooks=[stats.record, *hooks],
            )
            return await deliverer.run()

    return asyncio.run(asyncio.wait_for(run(), 120))


def fresh_outbox(folder: Any, datas: Sequence[bytes] = DOCS) -> SqliteOutbox:
    outbox = SqliteOutbox.open(folder / "outbox.sqlite", dead_letters=folder / "dead")
    outbox.enqueue(documents(datas), time.time())
    return outbox

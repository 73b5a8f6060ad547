"""Delivery of transaction Bundles to a FHIR server: a durable outbox, retries with
backoff, dead letters, per-patient order, server limits; used by ``replay``, ``batch`` and
``serve`` with ``--fhir-base``, and by ``leukofhir deliver``.

Modules, one subject each: :mod:`.policy` (what an answer means, backoff), :mod:`.hints`
(``Retry-After``, ``RateLimit``), :mod:`.answer` (reading a transaction-response),
:mod:`.client` (httpx transport, token, TLS), :mod:`.profiles` (server limits),
:mod:`.split` (parts in dependency order), :mod:`.send` (one attempt at one document),
:mod:`.outbox` (SQLite queue, order, dead letters), :mod:`.deadletter` (``OUT/dead`` files),
:mod:`.deliverer` (the asyncio loop), :mod:`.stats` (counts and latency for metrics),
:mod:`.keys` (ordering keys). The wiring: :mod:`.options` (the ``--fhir-*`` options),
:mod:`.background` (a deliverer in a thread, or until idle), :mod:`.now` (``replay``),
:mod:`.lock` (one deliverer per OUT), :mod:`.command` (``leukofhir deliver``).

The names below load their module when first used (PEP 562), so that the command line's
parsers, which live here, cost no httpx, asyncio or sqlite3 at start-up.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from leukofhir.delivery.answer import Answer
    from leukofhir.delivery.client import (
        TOKEN_ENV,
        FhirServer,
        Token,
        TransactionClient,
        read_token,
    )
    from leukofhir.delivery.deliverer import Deliverer, RunSummary, Stopped, deliver_now
    from leukofhir.delivery.keys import patient_key
    from leukofhir.delivery.outbox import (
        DeadLetter,
        Document,
        Outbox,
        OutboxCounts,
        Pending,
        Record,
        SqliteOutbox,
    )
    from leukofhir.delivery.policy import RetryPolicy, Verdict
    from leukofhir.delivery.profiles import PROFILES, ServerProfile
    from leukofhir.delivery.send import Attempt, send_document
    from leukofhir.delivery.split import SplitError
    from leukofhir.delivery.stats import Attempted, DeliveryStats, StatsSnapshot

__all__ = [
    "PROFILES",
    "TOKEN_ENV",
    "Answer",
    "Attempt",
    "Attempted",
    "DeadLetter",
    "Deliverer",
    "DeliveryStats",
    "Document",
    "FhirServer",
    "Outbox",
    "OutboxCounts",
    "Pending",
    "Record",
    "RetryPolicy",
    "RunSummary",
    "ServerProfile",
    "SplitError",
    "SqliteOutbox",
    "StatsSnapshot",
    "Stopped",
    "Token",
    "TransactionClient",
    "Verdict",
    "deliver_now",
    "patient_key",
    "read_token",
    "send_document",
]

_MODULES = {
    "Answer": "answer",
    "TOKEN_ENV": "client",
    "FhirServer": "client",
    "Token": "client",
    "TransactionClient": "client",
    "read_token": "client",
    "Deliverer": "deliverer",
    "RunSummary": "deliverer",
    "Stopped": "deliverer",
    "deliver_now": "deliverer",
    "patient_key": "keys",
    "DeadLetter": "outbox",
    "Document": "outbox",
    "Outbox": "outbox",
    "OutboxCounts": "outbox",
    "Pending": "outbox",
    "Record": "outbox",
    "SqliteOutbox": "outbox",
    "RetryPolicy": "policy",
    "Verdict": "policy",
    "Attempt": "send",
    "send_document": "send",
    "PROFILES": "profiles",
    "ServerProfile": "profiles",
    "SplitError": "split",
    "Attempted": "stats",
    "DeliveryStats": "stats",
    "StatsSnapshot": "stats",
}


def __getattr__(name: str) -> Any:
    module = _MODULES.get(name)
    if module is None:
        raise AttributeError(f"module 'leukofhir.delivery' has no attribute {name!r}")
    return getattr(importlib.import_module(f"leukofhir.delivery.{module}"), name)

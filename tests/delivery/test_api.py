"""The delivery package's public names, pinned (as httpx pins its own)."""

from __future__ import annotations

import importlib

import leukofhir.delivery

MODULES = (
    "answer", "client", "deadletter", "deliverer", "hints", "keys", "outbox", "policy",
    "send", "split", "stats",
)  # fmt: skip


def test_package_exports() -> None:
    assert sorted(leukofhir.delivery.__all__) == sorted([
        "PROFILES", "TOKEN_ENV", "Answer", "Attempt", "Attempted", "DeadLetter", "Deliverer",
        "DeliveryStats", "Document", "FhirServer", "Outbox", "OutboxCounts", "Pending", "Record",
        "RetryPolicy", "RunSummary", "ServerProfile", "SplitError", "SqliteOutbox",
        "StatsSnapshot", "Stopped", "Token", "TransactionClient", "Verdict", "deliver_now",
        "patient_key", "read_token", "send_document",
    ])  # fmt: skip
    for name in leukofhir.delivery.__all__:
        assert getattr(leukofhir.delivery, name) is not None


def test_every_module_declares_what_it_exports() -> None:
    for name in MODULES:
        module = importlib.import_module(f"leukofhir.delivery.{name}")
        assert module.__all__, name
        for exported in module.__all__:
            assert hasattr(module, exported), (name, exported)

"""``replay --fhir-base``: each Bundle delivered before the next message is read, without
an outbox (:func:`~leukofhir.delivery.deliverer.deliver_now`: retried with the same
backoff and ``retry_for``), over one kept-alive connection.

Stdout keeps the documents; the server's answer to each is a structured log line on stderr
(``fhir delivery``: key, verdict, HTTP status, requests, ms, reason: no patient data), and
the run closes with a ``replay delivery`` line of counts.  The same rules as the outbox:
a dead letter holds the later documents of its patient (not sent, counted ``held``); a
401/403 stops delivery (the later documents are not sent, counted ``not_sent``).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Self

import orjson

from leukofhir.delivery.client import TransactionClient
from leukofhir.delivery.deliverer import deliver_now
from leukofhir.delivery.keys import patient_key
from leukofhir.delivery.options import DeliveryOptions
from leukofhir.delivery.policy import Verdict
from leukofhir.delivery.stats import DeliveryStats
from leukofhir.logs import get_logger

__all__ = ["DeliveryNow"]

_log = get_logger("leukofhir.delivery")


class DeliveryNow:
    def __init__(self, options: DeliveryOptions) -> None:
        self.options = options
        self.stats = DeliveryStats()
        self.counts: Counter[str] = Counter()
        self.stopped = ""
        self._dead_patients: set[str] = set()
        self._runner = asyncio.Runner()
        self._client = TransactionClient(options.server(), observe=self.stats.observe)

    def send(self, key: str, data: bytes) -> str:
        """Deliver one document (a transaction Bundle); its verdict (delivered, dead, stop,
        or held / not_sent without a request)."""
        patient = patient_key(orjson.loads(data)) or key
        if self.stopped:
            return self._count(key, "not_sent", "delivery stopped")
        if patient in self._dead_patients:
            return self._count(key, "held", "an earlier document of its patient is dead")
        started = time.perf_counter()
        attempt = self._runner.run(
            deliver_now(
                self._client.post,
                data,
                profile=self.options.profile,
                policy=self.options.policy(),
            )
        )
        answer = attempt.answer
        if answer.verdict is Verdict.DEAD:
            self._dead_patients.add(patient)
        if answer.verdict is Verdict.STOP:
            self.stopped = answer.reason
        return self._count(
            key,
            answer.verdict.value,
            answer.reason,
            status=answer.status,
            requests=attempt.requests,
            ms=round((time.perf_counter() - started) * 1000, 1),
        )

    def _count(self, key: str, verdict: str, reason: str, **fields: object) -> str:
        self.counts[verdict] += 1
        emit = _log.info if verdict == Verdict.DELIVERED.value else _log.warning
        emit("fhir delivery", key=key, verdict=verdict, reason=reason, **fields)
        return verdict

    def close(self) -> None:
        self._runner.run(self._client.aclose())
        self._runner.close()
        _log.info("replay delivery", stopped=self.stopped, **dict(sorted(self.counts.items())))

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

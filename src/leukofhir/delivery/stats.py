"""Delivery counts and the latency of the server's answers, as plain values: a hook for the
deliverer and the client, read by whoever shows them (serve's Prometheus layer, batch's
summary and progress bar, ``deliver --status``).  Labels and values never carry patient
data: verdicts, HTTP statuses and seconds only.

:class:`DeliveryStats` is the in-process implementation: ``record`` hears each document
attempt (:class:`Attempted`), ``observe`` each HTTP exchange (status or None, seconds);
:meth:`DeliveryStats.snapshot` returns a frozen copy.  A Prometheus exporter would be
another pair of callables with the same signatures.
"""

from __future__ import annotations

import bisect
import threading
from collections import Counter
from dataclasses import dataclass

from leukofhir.delivery.policy import Verdict

__all__ = ["LATENCY_BUCKETS", "Attempted", "DeliveryStats", "StatsSnapshot"]

# Upper bounds in seconds (Prometheus-style, cumulative when exported); the last is +Inf.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


@dataclass(frozen=True, slots=True)
class Attempted:
    """One attempt at one document, as the deliverer saw it."""

    key: str
    verdict: Verdict
    status: int | None
    attempt: int  # 1 for the first
    requests: int  # transactions it sent (more than 1: a split document)
    seconds: float
    retry_in: float | None = None  # verdict retry: seconds until the next attempt
    reason: str = ""


@dataclass(frozen=True, slots=True)
class StatsSnapshot:
    attempts: int
    by_verdict: dict[str, int]  # delivered / retry / dead / stop
    by_status: dict[str, int]  # "201", "503", "none" (no answer)
    requests: int
    latency_buckets: tuple[int, ...]  # per LATENCY_BUCKETS bound, then over the last
    latency_sum: float


class DeliveryStats:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._verdicts: Counter[str] = Counter()
        self._statuses: Counter[str] = Counter()
        self._buckets = [0] * (len(LATENCY_BUCKETS) + 1)
        self._sum = 0.0

    def record(self, attempted: Attempted) -> None:
        with self._lock:
            self._verdicts[attempted.verdict.value] += 1

    def observe(self, status: int | None, seconds: float) -> None:
        with self._lock:
            self._statuses["none" if status is None else str(status)] += 1
            self._buckets[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
            self._sum += seconds

    def snapshot(self) -> StatsSnapshot:
        with self._lock:
            return StatsSnapshot(
                attempts=sum(self._verdicts.values()),
                by_verdict=dict(self._verdicts),
                by_status=dict(self._statuses),
                requests=sum(self._statuses.values()),
                latency_buckets=tuple(self._buckets),
                latency_sum=self._sum,
            )

"""Prometheus metrics of the service (prometheus_client): messages by outcome and channel,
ACK codes, findings by kind and grade, the latency from receipt to reply, open MLLP
connections.  Labels never carry patient data.

With several service processes, ``PROMETHEUS_MULTIPROC_DIR`` is set before this module is
imported (``leukofhir serve`` does it): every process writes its values there and
``/metrics``, answered by any of them, adds them all up (prometheus_client's multiprocess
mode)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from leukofhir.delivery.outbox import OutboxCounts
from leukofhir.delivery.stats import LATENCY_BUCKETS, Attempted

__all__ = ["CONTENT_TYPE", "MULTIPROCESS_ENV", "Metrics", "mark_dead"]

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"

CONTENT_TYPE = CONTENT_TYPE_LATEST
_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Metrics:
    def __init__(self) -> None:
        disable_created_metrics()  # type: ignore[no-untyped-call]  # *_created: noise here
        self.registry = CollectorRegistry()
        self.messages = Counter(
            "leukofhir_messages",
            "Messages answered, by channel and outcome (failed: processing raised, a fault"
            " of ours, kept as failed in the journal; duplicate: a re-send answered from the"
            " journal; unstored: not accepted now, send it again: the journal or the outputs"
            " could not be written, or the service is stopping)",
            ("channel", "outcome"),
            registry=self.registry,
        )
        self.acks = Counter(
            "leukofhir_acks", "Application replies by code", ("code",), registry=self.registry
        )
        self.findings = Counter(
            "leukofhir_findings",
            "Findings by rule and grade",
            ("finding",),
            registry=self.registry,
        )
        self.latency = Histogram(
            "leukofhir_reply_seconds",
            "Time from a message's arrival to its reply",
            ("channel",),
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self.connections = Gauge(
            "leukofhir_mllp_connections",
            "Open MLLP connections",
            registry=self.registry,
            multiprocess_mode="livesum",
        )
        self.deliveries = Counter(
            "leukofhir_fhir_deliveries",
            "Attempts to deliver a document to the FHIR server, by result (delivered; retry:"
            " a retry is scheduled; dead: a dead letter; stop: 401/403, delivery stopped)",
            ("result",),
            registry=self.registry,
        )
        self.fhir_latency = Histogram(
            "leukofhir_fhir_request_seconds",
            "Time from sending a transaction to the FHIR server to its whole answer (or to"
            " giving up on it)",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.fhir_requests = Counter(
            "leukofhir_fhir_requests",
            "Transactions sent to the FHIR server, by HTTP status (none: no answer)",
            ("status",),
            registry=self.registry,
        )
        self._outbox: Callable[[], OutboxCounts] | None = None

    def watch_outbox(self, counts: Callable[[], OutboxCounts]) -> None:
        """Export the outbox's counts, read at each scrape (any process answers it)."""
        self._outbox = counts
        self.registry.register(_OutboxCollector(counts))

    def record_delivery(self, attempted: Attempted) -> None:
        self.deliveries.labels(attempted.verdict.value).inc()

    def observe_fhir(self, status: int | None, seconds: float) -> None:
        self.fhir_requests.labels("none" if status is None else str(status)).inc()
        self.fhir_latency.observe(seconds)

    def observe(
        self,
        *,
        channel: str,
        outcome: str,
        code: str,
        findings: tuple[str, ...],
        seconds: float,
    ) -> None:
        self.messages.labels(channel, outcome).inc()
        self.acks.labels(code).inc()
        for finding in findings:
            self.findings.labels(finding).inc()
        self.latency.labels(channel).observe(seconds)

    def exposition(self) -> bytes:
        folder = os.environ.get(MULTIPROCESS_ENV)
        if not folder:
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=folder)  # type: ignore[no-untyped-call]
        if self._outbox is not None:
            registry.register(_OutboxCollector(self._outbox))
        return generate_latest(registry)


class _OutboxCollector(Collector):
    """The outbox's depth by state and the age of its oldest pending document, read from
    the journal when scraped (so every service process tells the same)."""

    def __init__(self, counts: Callable[[], OutboxCounts]) -> None:
        self._counts = counts

    def collect(self) -> Iterator[GaugeMetricFamily]:
        counts = self._counts()
        documents = GaugeMetricFamily(
            "leukofhir_outbox_documents",
            "Documents in the FHIR outbox by state (pending includes scheduled_retry and"
            " held: behind a dead letter of the same patient)",
            labels=["state"],
        )
        for state, value in (
            ("pending", counts.pending),
            ("scheduled_retry", counts.scheduled),
            ("held", counts.held),
            ("delivered", counts.delivered),
            ("dead", counts.dead),
            ("abandoned", counts.abandoned),
        ):
            documents.add_metric([state], value)
        yield documents
        yield GaugeMetricFamily(
            "leukofhir_outbox_oldest_pending_seconds",
            "Age of the oldest document not delivered yet (0: none)",
            value=counts.oldest_pending_age or 0.0,
        )


def mark_dead(pid: int) -> None:
    """A service process ended: its live gauges no longer count."""
    if os.environ.get(MULTIPROCESS_ENV):
        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]

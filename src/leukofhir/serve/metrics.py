"""Prometheus metrics of the service (prometheus_client): messages by outcome and channel,
ACK codes, findings by kind and grade, the latency from receipt to reply, open MLLP
connections.  Labels never carry patient data.

With several service processes, ``PROMETHEUS_MULTIPROC_DIR`` is set before this module is
imported (``leukofhir serve`` does it): every process writes its values there and
``/metrics``, answered by any of them, adds them all up (prometheus_client's multiprocess
mode)."""

from __future__ import annotations

import os

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

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
        return generate_latest(registry)


def mark_dead(pid: int) -> None:
    """A service process ended: its live gauges no longer count."""
    if os.environ.get(MULTIPROCESS_ENV):
        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]

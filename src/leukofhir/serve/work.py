"""The service's processing step, pure apart from building its context once: stored
messages in, serialised results out.  It runs in worker processes (one per core) or, with
``--workers 0``, in the service's I/O thread.  Nothing here touches a socket, the journal
or the sink; results travel back as bytes and small values.
"""

from __future__ import annotations

import ctypes
import os
import signal
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

from leukofhir.context import Context
from leukofhir.emit.ack import acknowledgment_code
from leukofhir.emit.jsonio import dumps
from leukofhir.errors import Issue
from leukofhir.pipeline import MessageOutcome, process
from leukofhir.rules import load_rule_set
from leukofhir.terminology import load_terminology

__all__ = ["Job", "Processed", "Processor", "ProcessorConfig", "Result", "init_pool", "run_jobs"]


@dataclass(frozen=True, slots=True)
class ProcessorConfig:
    mappings: tuple[str, ...] = ()
    timezone: str = "UTC"
    validate_structure: bool = False
    validate_output: bool = False


@dataclass(frozen=True, slots=True)
class Job:
    id: int  # the journal entry
    format: str  # hl7v2 | fhir
    received: str  # ISO instant: the outputs' Provenance.recorded (a restart gives the same)
    data: bytes


@dataclass(frozen=True, slots=True)
class Result:
    """One outcome of a job (an HL7 message has one; a FHIR body one per report)."""

    disposition: str  # processed | skipped | rejected
    ack: str  # AA | AE | AR
    control_id: str
    issues: tuple[Issue, ...]
    documents: tuple[tuple[str, bytes], ...]  # (file suffix, JSON bytes) in output order
    reports: int
    findings: tuple[str, ...]  # "leukopenia G2", "eosinophilia" ...


@dataclass(frozen=True, slots=True)
class Processed:
    id: int
    results: tuple[Result, ...]


class Processor:
    """One context, many jobs."""

    def __init__(self, config: ProcessorConfig) -> None:
        self._base = Context(
            now=datetime.fromtimestamp(0).astimezone(),
            terminology=load_terminology([Path(m) for m in config.mappings]),
            rule_set=load_rule_set(),
            default_timezone=config.timezone,
            validate_structure=config.validate_structure,
            validate_output=config.validate_output,
        )

    def run(self, jobs: Sequence[Job]) -> list[Processed]:
        return [self.run_one(job) for job in jobs]

    def run_one(self, job: Job) -> Processed:
        context = replace(self._base, now=datetime.fromisoformat(job.received))
        outcomes = process(job.data, context, input_format=job.format)
        return Processed(job.id, tuple(_result(outcome) for outcome in outcomes))


def _result(outcome: MessageOutcome) -> Result:
    return Result(
        disposition=outcome.disposition.value,
        ack=acknowledgment_code(outcome),
        control_id=outcome.control_id,
        issues=outcome.issues,
        documents=tuple(
            (suffix, dumps(document) + b"\n") for suffix, document in outcome.named_documents()
        ),
        reports=len(outcome.reports),
        findings=tuple(
            f"{f.rule_id} G{f.grade}" if f.grade is not None else f.rule_id
            for report in outcome.reports
            for f in report.evaluation.findings
        ),
    )


# -- pool side ---------------------------------------------------------------------------

_processor: Processor | None = None


def init_pool(config: ProcessorConfig) -> None:
    """Pool initializer: die with the service, leave signals to it, build the processor."""
    global _processor
    try:  # Linux: SIGKILL this worker when the process that started it dies
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        pass
    if os.getppid() == 1:  # pragma: no cover - orphaned before prctl
        os._exit(1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the service shuts down cleanly
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _processor = Processor(config)


def run_jobs(jobs: Sequence[Job]) -> list[Processed]:
    if _processor is None:  # pragma: no cover - the initializer always ran
        raise RuntimeError("worker not initialised")
    return _processor.run(jobs)

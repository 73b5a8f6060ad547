"""The service's processing step: stored messages in, serialised results out, and (for a
sink that allows it, such as the folder sink) the outputs delivered right here, so that
writing files is spread over the worker processes like the processing is.  It runs in
worker processes (one per core) or, with ``--workers 0``, in the service's I/O thread.
Nothing here touches a socket or the journal; results travel back as bytes and small
values, and a delivery that fails comes back as a failure, never as a dead worker.
"""

from __future__ import annotations

import ctypes
import os
import signal
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

from leukofhir.batch.naming import message_key
from leukofhir.context import Context
from leukofhir.emit.ack import acknowledgment_code
from leukofhir.emit.jsonio import dumps
from leukofhir.errors import Issue
from leukofhir.pipeline import MessageOutcome, process
from leukofhir.rules import load_rule_set
from leukofhir.serve.sink import Delivery, Sink
from leukofhir.terminology import load_terminology

__all__ = [
    "Job",
    "Processed",
    "Processor",
    "ProcessorConfig",
    "Result",
    "deliver",
    "init_pool",
    "run_jobs",
]


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
    sender: str = ""  # MSH-3|MSH-4; with the control id and ``sha256``, names the outputs
    control_id: str = ""  # MSH-10 as read by the service (names a rejected message too)
    sha256: str = ""
    write: bool = True  # False: only the results (a re-send asking for its Bundles)
    documents: bool = True  # False: once written, the documents need not travel back

    def key(self, index: int) -> str:
        """The output key of the job's ``index``-th result: the same message (same sender,
        control id and content) always gets the same names."""
        return message_key(f"{self.sender}\0{self.control_id}", index, self.sha256 or str(self.id))


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
    outputs: tuple[str, ...] | None = None  # delivered here: what was written
    failure: str = ""  # the delivery failed (disk full ...): nothing may be acknowledged


class Processor:
    """One context, many jobs; with a ``sink``, each job's outputs delivered after it."""

    def __init__(self, config: ProcessorConfig, sink: Sink | None = None) -> None:
        self.sink = sink
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
        results = tuple(_result(outcome) for outcome in outcomes)
        if self.sink is None or not job.write:
            return Processed(job.id, results)
        try:
            outputs = deliver(self.sink, job, results)
        except OSError as exc:
            return Processed(job.id, results, failure=exc.strerror or type(exc).__name__)
        if not job.documents:  # tens of kB per message not pickled back to the service
            results = tuple(replace(r, documents=()) for r in results)
        return Processed(job.id, results, outputs)


def deliver(sink: Sink, job: Job, results: Sequence[Result]) -> tuple[str, ...]:
    """Every result's documents (and a rejected message's own bytes) to ``sink``."""
    suffix = ".hl7" if job.format == "hl7v2" else ".json"
    names: list[str] = []
    for index, result in enumerate(results):
        delivery = Delivery(
            job.key(index),
            result.disposition,
            result.control_id or job.control_id,
            result.documents,
            job.data,
            suffix,
        )
        names.extend(sink.deliver(delivery))
    return tuple(names)


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


def init_pool(config: ProcessorConfig, sink: Sink | None) -> None:
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
    _processor = Processor(config, sink)


def run_jobs(jobs: Sequence[Job]) -> list[Processed]:
    if _processor is None:  # pragma: no cover - the initializer always ran
        raise RuntimeError("worker not initialised")
    return _processor.run(jobs)

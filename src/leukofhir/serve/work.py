"""The service's processing step: a stored message in, serialised results out (the core,
with a context built once per process), and their delivery to a sink.  Nothing here
touches a socket or the journal."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

from leukofhir.batch.naming import message_key
from leukofhir.context import Context, Settings
from leukofhir.emit.ack import acknowledgment_code
from leukofhir.emit.jsonio import dumps
from leukofhir.emit.outcome import build_operation_outcome
from leukofhir.errors import ErrorCode, Issue, Location, error
from leukofhir.pipeline import MessageOutcome, process
from leukofhir.serve.sink import Delivery, Sink
from leukofhir.serve.states import Changes, PatientStates

OUTCOME_SUFFIX = ".outcome.json"
BUNDLE_SUFFIX = ".bundle.json"

__all__ = [
    "Job",
    "Outbound",
    "Processed",
    "Processor",
    "Result",
    "deliver",
    "notes_of",
    "refused",
    "result_of",
]


@dataclass(frozen=True, slots=True)
class Job:
    id: int  # the journal entry
    format: str  # hl7v2 | fhir
    received: str  # ISO instant: the outputs' Provenance.recorded (a restart gives the same)
    data: bytes
    sender: str = ""  # MSH-3|MSH-4; with the control id and ``sha256``, names the outputs
    control_id: str = ""  # MSH-10 as read by the service (names a rejected message too)
    sha256: str = ""

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
    notes: bool = False  # the OperationOutcome holds notes only: kept in the journal instead
    patients: tuple[str, ...] = ()  # per Bundle document, its patient as the lifecycle knows it


@dataclass(frozen=True, slots=True)
class Processed:
    id: int
    results: tuple[Result, ...]
    changes: Changes = field(default_factory=Changes)  # the patients' states it read, wrote


class Processor:
    """One context, many jobs."""

    def __init__(self, settings: Settings) -> None:
        self._base = settings.context(datetime.fromtimestamp(0).astimezone())

    def context(self, job: Job) -> Context:
        """The context of ``job``: its outputs are recorded at the time it was received."""
        return replace(self._base, now=datetime.fromisoformat(job.received))

    def run_one(
        self, job: Job, states: PatientStates | None = None, *, keep: bool = True
    ) -> Processed:
        """The job's results, settled against the patients' ``states`` (without them: as
        for patients without history); ``keep``: see :meth:`PatientStates.settle`."""
        context = self.context(job)
        outcomes = list(process(job.data, context, input_format=job.format))
        if job.format == "hl7v2" and len(outcomes) > 1:  # one ACK cannot answer several
            return refused(job, _several(len(outcomes)))
        changes = Changes()
        if states is not None:
            outcomes, changes = states.settle(outcomes, context.rule_set, keep=keep)
        return Processed(job.id, tuple(result_of(o) for o in outcomes), changes)


def notes_of(results: Sequence[Result]) -> tuple[str, ...]:
    """The notes the sink did not get (see :attr:`Result.notes`), as text."""
    return tuple(issue.text for result in results if result.notes for issue in result.issues)


def _several(count: int) -> Issue:
    return error(
        ErrorCode.UNSUPPORTED_MESSAGE_TYPE,
        f"this frame (or request body) holds {count} HL7 messages; an ACK answers one: send"
        " them one per frame. Nothing of it was processed",
        Location("MSH"),
    )


def refused(job: Job, issue: Issue) -> Processed:
    """A message refused by the service's own checks (a processing id that is not P, T or
    D; several messages in one frame): rejected, with its OperationOutcome."""
    outcome = build_operation_outcome([issue], seed=job.sha256, context=f"MSH-10 {job.control_id}")
    documents = ((".outcome.json", dumps(outcome) + b"\n"),)
    return Processed(
        job.id, (Result("rejected", "AR", job.control_id, (issue,), documents, 0, ()),)
    )


@dataclass(frozen=True, slots=True)
class Outbound:
    """A Bundle to queue for the FHIR server: its output name, its patient ("" when it
    names none), its bytes."""

    name: str
    patient: str
    data: bytes


def deliver(
    sink: Sink, job: Job, results: Sequence[Result], bundles: list[Outbound] | None = None
) -> tuple[str, ...]:
    """Every result's documents (and a rejected message's own bytes) to ``sink``; the
    names it wrote.  ``bundles`` receives the Bundles, named as written."""
    suffix = ".hl7" if job.format == "hl7v2" else ".json"
    names: list[str] = []
    for index, result in enumerate(results):
        documents = result.documents
        if result.notes:  # as in batch: notes go to the journal, not to a file
            documents = tuple(d for d in documents if d[0] != OUTCOME_SUFFIX)
        delivery = Delivery(
            job.key(index),
            result.disposition,
            result.control_id or job.control_id,
            documents,
            job.data,
            suffix,
        )
        written = sink.deliver(delivery)
        names.extend(written)
        if bundles is not None:
            named = zip(written[len(written) - len(documents) :], documents, strict=True)
            data = [(name, body) for name, (kind, body) in named if kind.endswith(BUNDLE_SUFFIX)]
            bundles.extend(
                Outbound(name, patient, body)
                for (name, body), patient in zip(data, result.patients, strict=True)
            )
    return tuple(names)


def result_of(outcome: MessageOutcome) -> Result:
    """What the service keeps of one outcome: its documents as bytes, its ACK, ..."""
    written = outcome.settled or (True,) * len(outcome.reports)  # unsettled: each has one
    patients = tuple(
        report.draft.facts.patient if report.draft.facts is not None else ""
        for report, bundle in zip(outcome.reports, written, strict=True)
        if bundle is not None
    )
    return Result(
        patients=patients,
        disposition=outcome.disposition.value,
        ack=acknowledgment_code(outcome),
        control_id=outcome.control_id,
        issues=outcome.issues,
        documents=tuple(
            (suffix, dumps(document) + b"\n") for suffix, document in outcome.named_documents()
        ),
        reports=len(outcome.reports),
        notes=outcome.notes_only,
        findings=tuple(
            f"{f.rule_id} G{f.grade}" if f.grade is not None else f.rule_id
            for report in outcome.reports
            for f in report.evaluation.findings
        ),
    )

"""The single entry point of the core: bytes in, one :class:`MessageOutcome` per message out.

Every edge (replay, batch, serve) calls :func:`process` (a whole file or stream)
or :func:`process_message` (one framed message).  Nothing here reads a clock,
the environment or a file: all of that comes in the :class:`Context`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from enum import Enum
from functools import partial
from typing import TYPE_CHECKING

from leukofhir.context import Context
from leukofhir.emit.bundle import Draft, build_draft
from leukofhir.emit.datatypes import Json
from leukofhir.emit.outcome import build_operation_outcome
from leukofhir.errors import (
    ErrorCode,
    Issue,
    Location,
    Severity,
    error,
    information,
    issue_for,
)
from leukofhir.ingest.er7 import parse_message
from leukofhir.ingest.framing import RawMessage, split_messages
from leukofhir.ingest.hl7v2 import read_lab_message
from leukofhir.ingest.sniff import looks_like_fhir
from leukofhir.model import LOINC, Cbc, Evaluation, LabMessage, LabReport
from leukofhir.rules import RuleSet, evaluate
from leukofhir.rules.clinical import clinical_context
from leukofhir.rules.patient_limit import observed_limit
from leukofhir.terminology import build_cbc

if TYPE_CHECKING:
    from leukofhir.ingest.fhir import FhirUnit


class Disposition(Enum):
    PROCESSED = "processed"  # at least one Bundle
    SKIPPED = "skipped"  # a good message without a CBC
    REJECTED = "rejected"  # unparseable, unsupported, or failed on our side


@dataclass(frozen=True, slots=True)
class ReportOutcome:
    cbc: Cbc
    evaluation: Evaluation
    draft: Draft = field(hash=False, compare=False)
    rule_set: RuleSet = field(hash=False, compare=False, repr=False)

    @property
    def bundle(self) -> Json:
        """The Bundle as it is for a patient without earlier reports (the lifecycle's empty
        state; see :mod:`leukofhir.lifecycle.settle` for a patient's real history)."""
        from leukofhir.lifecycle.settle import settle_alone

        return settle_alone(self.draft, self.rule_set)


@dataclass(frozen=True, slots=True)
class MessageOutcome:
    index: int  # 0-based position of the message in its input
    offset: int  # byte offset of the message in its input
    disposition: Disposition
    message: LabMessage | None = None
    reports: tuple[ReportOutcome, ...] = ()
    issues: tuple[Issue, ...] = ()
    # the reports' Bundles once settled against the patients' history (None: a superseded
    # version, nothing written); None until :func:`leukofhir.lifecycle.settle.settle_message`
    settled: tuple[Json | None, ...] | None = field(default=None, hash=False, compare=False)

    @property
    def control_id(self) -> str:
        return self.message.control_id if self.message else ""

    @property
    def label(self) -> str:
        """Names the message in outcomes and logs: its position and MSH-10 (no patient data)."""
        label = f"message {self.index + 1}"
        return f"{label}, MSH-10 {self.control_id}" if self.control_id else label

    @property
    def notes_only(self) -> bool:
        """Processed, and every issue is a note (severity ``information``, type
        ``informational``: "OBX[2] … are no CBC field leukofhir evaluates; not used"):
        a store may keep the notes beside the Bundles instead of an OperationOutcome file."""
        return notes_only(self.disposition, self.issues)

    def operation_outcome(self) -> Json | None:
        """The OperationOutcome that travels after the Bundles (None when nothing to say)."""
        if not self.issues:
            return None
        return build_operation_outcome(self.issues, seed=self.seed, context=self.label)

    @property
    def seed(self) -> str:
        """What the ids of the message's OperationOutcome derive from."""
        return self.message.digest if self.message else f"{self.index}|{self.offset}"

    def documents(self) -> list[Json]:
        """What the message produced, in output order: its Bundles, then its OperationOutcome."""
        return [document for _, document in self.named_documents()]

    def named_documents(self) -> list[tuple[str, Json]]:
        """:meth:`documents` with the file-name suffix each gets when written one per file
        (``.r1.bundle.json`` …, ``.outcome.json``): replay ``--out`` and batch share it."""
        bundles = self.settled
        if bundles is None:  # not settled: as for a patient without history
            bundles = tuple(report.bundle for report in self.reports)
        out = [(f".r{n}.bundle.json", b) for n, b in enumerate(bundles, 1) if b is not None]
        if (outcome := self.operation_outcome()) is not None:
            out.append((".outcome.json", outcome))
        return out


def notes_only(disposition: Disposition, issues: Sequence[Issue]) -> bool:
    """See :attr:`MessageOutcome.notes_only`."""
    return (
        disposition is Disposition.PROCESSED
        and bool(issues)
        and all(
            i.severity is Severity.INFORMATION and i.issue_type == "informational" for i in issues
        )
    )


def process(
    data: bytes, context: Context, *, input_format: str = "auto"
) -> Iterator[MessageOutcome]:
    """Every message in ``data``: HL7 v2 (one message, several, an FHS/BHS batch, MLLP
    frames) or FHIR (a resource, a Bundle, NDJSON; one outcome per report).

    ``input_format`` is ``auto`` (FHIR when the first non-blank byte is ``{`` or ``[``),
    ``hl7v2`` or ``fhir``.  An input without any message (zero bytes, blank lines) is not
    passed over in silence: it gives one rejected outcome that says so."""
    if input_format == "fhir" or (input_format == "auto" and looks_like_fhir(data)):
        yield from process_fhir(data, context)
        return
    empty = True
    for outcome in _unbroken(process_message(raw, context) for raw in split_messages(data)):
        empty = False
        yield outcome
    if empty:
        issue = error(
            ErrorCode.REQUIRED_FIELD_MISSING,
            "the input holds no HL7 message (it is empty or blank): nothing was processed;"
            " check that the sender wrote the whole file",
            Location("MSH", 1),
        )
        yield MessageOutcome(0, 0, Disposition.REJECTED, issues=(issue,))


def process_fhir(data: bytes, context: Context) -> Iterator[MessageOutcome]:
    """FHIR input: one outcome per report (a bad report is rejected, the others go on)."""
    from leukofhir.ingest.fhir import read_fhir  # the FHIR readers: for FHIR input only

    units = read_fhir(data, context.default_timezone, terminology=context.terminology)
    return _unbroken(_fhir_outcomes(units, context))


def process_ndjson(lines: Iterable[bytes], context: Context) -> Iterator[MessageOutcome]:
    """FHIR NDJSON read line by line (an open file): memory does not grow with the file.
    An ``OSError`` reading ``lines`` is the caller's and passes through."""
    from leukofhir.ingest.fhir import read_fhir_lines

    units = read_fhir_lines(lines, context.default_timezone, terminology=context.terminology)
    return _unbroken(_fhir_outcomes(units, context))


def _unbroken(outcomes: Iterator[MessageOutcome]) -> Iterator[MessageOutcome]:
    """``outcomes`` as they come; should reading the input itself fail (the readers catch a
    fault per message, report or NDJSON line, so this is the last net), one rejected
    outcome with code 207 ends it instead of a traceback that would lose what follows."""
    index = offset = 0
    try:
        for outcome in outcomes:
            index, offset = outcome.index + 1, outcome.offset
            yield outcome
    except OSError:  # reading the caller's own source (an open file): the caller's to report
        raise
    except Exception as exc:
        yield MessageOutcome(index, offset, Disposition.REJECTED, issues=(issue_for(exc),))


def _fhir_outcomes(units: Iterable[FhirUnit], context: Context) -> Iterator[MessageOutcome]:
    for unit in units:
        if unit.message is None:
            issue = unit.error or error(ErrorCode.INTERNAL_ERROR, "unreadable FHIR input")
            yield MessageOutcome(unit.index, unit.offset, Disposition.REJECTED, issues=(issue,))
            continue
        message = unit.message
        issues = list(message.issues)
        yield _guarded(
            unit.index,
            unit.offset,
            partial(evaluate_message, message, unit.index, unit.offset, context, issues),
        )


def process_message(raw: RawMessage, context: Context) -> MessageOutcome:
    """One HL7 v2 message; never raises (an unexpected exception becomes a rejected outcome)."""
    return _guarded(raw.index, raw.offset, lambda: _process(raw, context))


def _guarded(index: int, offset: int, work: Callable[[], MessageOutcome]) -> MessageOutcome:
    try:
        return work()
    except Exception as exc:  # the promise: no input ends in a traceback
        return MessageOutcome(index, offset, Disposition.REJECTED, issues=(issue_for(exc),))


def _process(raw: RawMessage, context: Context) -> MessageOutcome:
    er7 = parse_message(raw.data)
    message = read_lab_message(er7, raw.data, context.default_timezone)
    issues: list[Issue] = list(message.issues)
    if context.validate_structure:
        from leukofhir.ingest.structure import validate_structure

        text = raw.data.decode(er7.charset, errors="replace")
        issues.extend(validate_structure(text.replace("\r\n", "\r").replace("\n", "\r")))
    return evaluate_message(message, raw.index, raw.offset, context, issues)


def evaluate_message(
    message: LabMessage, index: int, offset: int, context: Context, issues: list[Issue]
) -> MessageOutcome:
    """A message read from any format → its outcome: per report with a CBC a Bundle."""
    recorded = context.now.isoformat(timespec="seconds")
    reports: list[ReportOutcome] = []
    no_cbc: list[Issue] = []  # reported only beside reports that do hold a CBC
    sex = message.patient.gender if message.patient else ""
    deployment = context.clinical
    for lab_report in message.reports:
        cbc = build_cbc(lab_report, context.terminology)
        if not cbc.values and not cbc.superseded:
            no_cbc.append(_note(f"{lab_report.location} holds no CBC result; not used", lab_report))
            continue
        observed, limit_lines, limit_issues = observed_limit(
            lab_report, context.rule_set, context.terminology
        )
        clinical, clinical_issues = clinical_context(
            message, lab_report, context.rule_set, deployment, now=context.now, observed=observed
        )
        evaluation = evaluate(cbc, context.rule_set, sex=sex, clinical=clinical)
        issues.extend(cbc.issues)
        issues.extend(limit_issues)
        issues.extend(issue for issue in clinical_issues if issue not in issues)
        issues.extend(evaluation.issues)
        unmapped = [obs for obs in cbc.unmapped if not any(obs is o for o in limit_lines)]
        if unmapped:
            lines = ", ".join(str(obs.location) for obs in unmapped)
            issues.append(
                _note(
                    f"{lines} in {lab_report.location} are no CBC field"
                    " leukofhir evaluates; not used",
                    lab_report,
                )
            )
        draft = build_draft(
            message,
            cbc,
            evaluation,
            rule_set=context.rule_set,
            recorded=recorded,
            issues=issues,
            refer_to_input=context.fhir_target == "source",
            notify=context.notify_critical,
        )
        if message.patient is None and evaluation.findings:
            issues.append(
                information(
                    ErrorCode.REQUIRED_FIELD_MISSING,
                    "the message has no patient, so the findings have no subject: they are in"
                    " the DiagnosticReport conclusion, without Flag",
                    fhir_type="incomplete",
                )
            )
        report = ReportOutcome(cbc, evaluation, draft, context.rule_set)
        if context.validate_output:
            from leukofhir.emit.validate import validate_bundle

            validate_bundle(report.bundle)
        reports.append(report)
    if not reports:
        local = sum(
            1
            for report in message.reports
            for obs in report.observations
            if not any(coding.system == LOINC for coding in obs.codes)
        )
        hint = (
            f" ({local} results carry only local codes: a mapping file passed with --mapping"
            " can map them to LOINC)"
            if local
            else ""
        )
        skipped = information(
            ErrorCode.ACCEPTED,
            f"no CBC result in this message{hint}; skipped",
            fhir_type="not-found",
        )
        return MessageOutcome(
            index, offset, Disposition.SKIPPED, message, issues=(skipped, *issues)
        )
    return MessageOutcome(
        index, offset, Disposition.PROCESSED, message, tuple(reports), (*issues, *no_cbc)
    )


def _note(text: str, report: LabReport) -> Issue:
    return information(ErrorCode.ACCEPTED, text, report.location, fhir_type="informational")

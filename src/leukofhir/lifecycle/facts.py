"""What the lifecycle needs to know of one report version: small, immutable, picklable.

:func:`report_facts` reads them off a message and one of its evaluated reports (pure).
The fold (:mod:`leukofhir.lifecycle.fold`) never sees FHIR resources, only these.

* :class:`Version` orders the versions of one report (LIFECYCLE.md): the time the
  results changed (OBR-22, else MSH-7; FHIR: ``DiagnosticReport.issued``, else the
  input's time), then the status rank (preliminary < final < corrected/amended <
  cancelled/entered-in-error), then MSH-10, then the content digest, so that the order
  is total and the same everywhere.
* :class:`Seen` is one finding in one report: present (with grade, priority, value and
  the Observations it rests on), absent (evaluated, not there) or not evaluated; a trend
  rule's is ``trend`` until the fold, which knows the earlier reports, decides it.
* :class:`Sample` is one count of one report as a trend rule reads it (its value, when
  it was collected, the Observation that carries it).
* :class:`Result` names one result resource the version writes, so that a newer version
  can withdraw what it no longer holds.
"""

from __future__ import annotations

from decimal import Decimal
from typing import NamedTuple

from leukofhir.lifecycle.instants import utc_instant
from leukofhir.model import Evaluation, LabMessage, LabReport
from leukofhir.rules import RuleSet, TrendRule

__all__ = [
    "ABSENT",
    "NOT_EVALUATED",
    "PRESENT",
    "TREND",
    "ReportFacts",
    "Result",
    "Sample",
    "Seen",
    "Version",
    "report_facts",
    "status_rank",
]

PRESENT = "present"
ABSENT = "absent"
NOT_EVALUATED = "not-evaluated"
TREND = "trend"  # a trend rule, decided by the fold from the patient's earlier reports
WITHDRAWN_STATUSES = frozenset({"cancelled", "entered-in-error"})

# DiagnosticReport.status → rank among versions sent at the same time
_RANK = {
    "registered": 0,
    "partial": 1,
    "preliminary": 1,
    "final": 2,
    "amended": 3,
    "corrected": 3,
    "appended": 3,
    "cancelled": 4,
    "entered-in-error": 4,
}


def status_rank(status: str) -> int:
    """Where a report status stands among versions sent at the same time (unknown: 0)."""
    return _RANK.get(status, 0)


class Version(NamedTuple):
    """One version of a report; versions compare in the order of LIFECYCLE.md."""

    changed: str  # UTC instant the results changed ("" when unknown)
    rank: int  # status_rank of the report status
    control_id: str  # MSH-10 (FHIR: "")
    digest: str  # of the message (64 bits of its SHA-256): two messages never tie

    @property
    def label(self) -> str:
        """Names the version in notes: ``MSH-10 X (2026-03-02T08:00:00Z)``."""
        name = f"MSH-10 {self.control_id}" if self.control_id else f"input {self.digest[:12]}"
        return f"{name} ({self.changed})" if self.changed else name


class Seen(NamedTuple):
    """One finding of the rule set in one report."""

    rule: str
    state: str  # PRESENT | ABSENT | NOT_EVALUATED
    grade: int | None = None
    priority: str = ""
    text: str = ""  # "Neutropenia, CTCAE grade 3 (moderate)"
    number: str = ""  # the deciding value, normalised (exact decimal text)
    comparator: str = ""  # "<" for "<0.5"
    unit: str = ""  # its UCUM unit ("10*9/L")
    evidence: tuple[str, ...] = ()  # Observation identifiers "system|value" it rests on
    critical: bool = False  # rests on a critical value (WBC < 2.0, ANC < 0.5)

    @property
    def value(self) -> str:
        """The deciding value as people read it: ``0.4 10*9/L``, ``<0.5 10*9/L``."""
        return f"{self.comparator}{self.number} {self.unit}".strip() if self.number else ""

    @property
    def present(self) -> bool:
        return self.state == PRESENT

    def worse_than(self, other: Seen, *, low_is_worse: bool) -> bool:
        """A higher grade, else a more extreme value; never on a tie."""
        mine, theirs = self.grade or 0, other.grade or 0
        if mine != theirs:
            return mine > theirs
        if not self.number or not other.number:
            return False
        a, b = Decimal(self.number), Decimal(other.number)
        return a < b if low_is_worse else a > b


class Sample(NamedTuple):
    """One count of one report, as a trend rule compares it with another."""

    analyte: str  # Analyte value: "neutrophils"
    value: str  # normalised, 10*9/L, with its comparator: "1.3", "<0.5"
    collected: str  # UTC instant
    shown: str  # the collection time as sent
    report: str  # the report identifier
    observation: str  # identifier "system|value" of the Observation ("" when unknown)


class Result(NamedTuple):
    """A result resource a version writes: its identifier, code and status."""

    identifier: str  # "system|value"
    code: str  # "system|code" of its primary coding
    status: str  # Observation.status


class ReportFacts(NamedTuple):
    patient: str  # what stays the same for one patient ("system|value" of its identifier)
    report: str  # "system|value" of the DiagnosticReport identifier
    version: Version
    collected: str  # UTC instant of specimen collection: the fold's order
    shown: str  # the collection time as sent (for texts and Flag periods)
    status: str  # DiagnosticReport.status
    findings: tuple[Seen, ...]  # one per rule of the rule set
    results: tuple[Result, ...] = ()
    # per count the trend rules read (RuleSet.trend_analytes): (value, Observation
    # identifier), ("", "") when the report has no usable value of it
    values: tuple[tuple[str, str], ...] = ()

    @property
    def withdrawn(self) -> bool:
        """The whole report is withdrawn (cancelled, entered in error, or every result is)."""
        if self.status in WITHDRAWN_STATUSES:
            return True
        return bool(self.results) and all(r.status in WITHDRAWN_STATUSES for r in self.results)

    @property
    def key(self) -> tuple[str, str]:
        """The fold's order: collection time, then the report identifier."""
        return self.collected, self.report


def report_facts(
    message: LabMessage,
    report: LabReport,
    evaluation: Evaluation,
    rule_set: RuleSet,
    *,
    patient: str,
    report_key: str,
    status: str,
    results: tuple[Result, ...],
    evidence: dict[int, str],
    values: tuple[tuple[str, str], ...] = (),
) -> ReportFacts:
    """The facts of one evaluated report.  ``evidence`` maps ``id()`` of a CBC value to the
    identifier ("system|value") of the Observation that carries it."""
    present = {finding.rule_id: finding for finding in evaluation.findings}
    unevaluated = {item.rule_id for item in evaluation.not_evaluated}
    seen: list[Seen] = []
    for rule in rule_set.rules:
        finding = present.get(rule.id)
        if finding is not None:
            first = finding.evidence[0].value if finding.evidence else None
            seen.append(
                Seen(
                    rule.id,
                    PRESENT,
                    finding.grade,
                    finding.priority,
                    finding.text,
                    str(first.number) if first is not None and first.number is not None else "",
                    first.comparator if first is not None else "",
                    first.unit if first is not None else "",
                    tuple(key for e in finding.evidence if (key := evidence.get(id(e.value), ""))),
                    finding.critical,
                )
            )
        elif rule.id in unevaluated:
            seen.append(Seen(rule.id, NOT_EVALUATED))
        else:
            trend = isinstance(rule, TrendRule) and rule.id not in evaluation.absent
            seen.append(Seen(rule.id, TREND if trend else ABSENT))
    changed = utc_instant(report.issued or message.sent_at)
    shown = report.effective or report.issued or message.sent_at
    return ReportFacts(
        patient=patient,
        report=report_key,
        version=Version(changed, status_rank(status), message.control_id, message.digest[:16]),
        collected=utc_instant(shown),
        shown=shown,
        status=status,
        findings=tuple(seen),
        results=results,
        values=values,
    )

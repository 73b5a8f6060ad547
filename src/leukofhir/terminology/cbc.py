"""LabReport → Cbc: identify each line, normalise it, choose one value per field, derive.

Every observation ends up in exactly one place: ``Cbc.values`` (the value the rules
read, one per analyte and measure, usable or with its problem), ``Cbc.superseded`` (a
CBC line not chosen: emitted, never dropped) or ``Cbc.unmapped`` (no CBC field).

Choice, per (analyte, measure): the first usable line in message order, except that a
code preferred over another (33256-9 over 6690-2) wins whatever the order; when no line
is usable, the first one (so the rules can say why).  Each superseded line adds an
information issue.  Then the differential's percents are checked as a whole, and the
missing counts are derived (see :mod:`leukofhir.terminology.derive`).
"""

from __future__ import annotations

from leukofhir.errors import ErrorCode, Issue, Location, information, warning
from leukofhir.model import Cbc, CbcValue, LabObservation, LabReport
from leukofhir.terminology.derive import derive_counts
from leukofhir.terminology.differential import implausible_percents
from leukofhir.terminology.identify import identify
from leukofhir.terminology.normalise import at_field, normalise, refuse
from leukofhir.terminology.tables import Terminology

__all__ = ["build_cbc"]


def build_cbc(report: LabReport, terminology: Terminology) -> Cbc:
    """The CBC fields of ``report``; pure (the same report gives the same Cbc)."""
    issues: list[Issue] = []
    unmapped: list[LabObservation] = []
    groups: dict[str, list[CbcValue]] = {}  # by field_key, in order of first line
    for obs in report.observations:
        field, never = identify(obs, terminology)
        if field is None:
            unmapped.append(obs)
            if never:
                issues.append(
                    information(
                        ErrorCode.ACCEPTED,
                        f"{never}; it is not a CBC field and is not used",
                        at_field(obs.location, 3),
                        fhir_type="informational",
                    )
                )
            continue
        value, issue = normalise(obs, field, terminology)
        if issue is not None:
            issues.append(issue)
        if (group := groups.get(field.key)) is None:
            groups[field.key] = [value]
        else:
            group.append(value)

    chosen: dict[str, CbcValue] = {}
    superseded: list[CbcValue] = []
    for key, group in groups.items():
        value = group[0] if len(group) == 1 else _choose(group, terminology)
        chosen[key] = value
        if len(group) > 1:
            for other in group:
                if other is not value:
                    superseded.append(other)
                    issues.append(_superseded(other, value, report, terminology))

    refused, problem = implausible_percents(chosen, terminology)
    for key in refused:
        value = chosen[key]
        chosen[key] = refuse(value, problem)
        label = terminology.label(value.analyte, value.measure)
        issues.append(
            warning(
                ErrorCode.DATA_TYPE,
                f"{label} ({value.loinc}): {problem}",
                _where(value, 5, report),
                fhir_type="value",
            )
        )

    values = [*chosen.values(), *derive_counts(chosen, terminology)]
    return Cbc(report, tuple(values), tuple(superseded), tuple(unmapped), tuple(issues))


def _choose(group: list[CbcValue], terminology: Terminology) -> CbcValue:
    pool = [value for value in group if value.usable] or group
    fields = terminology.fields
    for value in pool:
        if not any(
            value.loinc in fields[other.loinc].preferred_over
            for other in pool
            if other is not value
        ):
            return value
    return pool[0]


def _line(value: CbcValue, report: LabReport) -> Location:
    """Where a value's line is (every value chosen or superseded comes from a line)."""
    return value.observation.location if value.observation is not None else report.location


def _where(value: CbcValue, field: int, report: LabReport) -> Location:
    return at_field(_line(value, report), field)


def _superseded(
    other: CbcValue, used: CbcValue, report: LabReport, terminology: Terminology
) -> Issue:
    label = terminology.label(other.analyte, other.measure)
    why = (
        f"{used.loinc} is preferred over {other.loinc}"
        if other.loinc in terminology.fields[used.loinc].preferred_over
        else "the first usable line is used"
    )
    return information(
        ErrorCode.ACCEPTED,
        f"{label} ({other.loinc}) is also sent at {_line(used, report)} ({used.loinc});"
        f" {why}, so this line is kept as an Observation but not used by the rules",
        _where(other, 3, report),
        fhir_type="informational",
    )

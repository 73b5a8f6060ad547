"""Who the limits are for: a report's :class:`ClinicalContext` (pure).

From the patient's birth date and the collection date (:mod:`.age`), the paediatric
profile (:mod:`.paediatric`), the deployment (:mod:`.deployment`) and a patient-limit
Observation in the report (:mod:`.patient_limit`):

* an adult (18 or older on the collection day), or a patient of unknown age, keeps the
  rule file's limits (the deployment's adult ANC limit and intervals where it sets them);
  an unknown age gets a warning saying so;
* a child gets their band's limits; a finding the band has no limit for is not evaluated,
  with the reason; a trend rule not made for children is not evaluated either;
* a child whose band cannot be decided (a birth date known only to the year across a band
  edge, a birth date after the collection) gets no finding at all: each is not evaluated;
* a patient's own lower ANC limit (the report's Observation first, else the deployment's
  patient file) replaces the neutropenia threshold at any age.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from types import MappingProxyType

from leukofhir.errors import ErrorCode, Issue, Location, warning
from leukofhir.model import Analyte, LabMessage, LabObservation, LabReport, Measure, Patient
from leukofhir.rules.age import Age, age_span
from leukofhir.rules.deployment import Deployment, PatientLimit
from leukofhir.rules.paediatric import AgeBand, PaediatricProfile
from leukofhir.rules.ruleset import Interval, RuleSet, TrendRule, interval_key

__all__ = ["ClinicalContext", "Override", "clinical_context"]

NEUTROPENIA = "neutropenia"
_ANC = interval_key(Analyte.NEUTROPHILS, Measure.COUNT)


def _empty() -> Mapping[str, str]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Override:
    """Another limit than the rule file's for one finding, and whose it is."""

    limit: Decimal
    basis: str  # "age band 3-12 months, paediatric 1.0.0"


@dataclass(frozen=True, slots=True)
class ClinicalContext:
    """What :func:`~leukofhir.rules.evaluate` applies besides the rule file."""

    overrides: Mapping[str, Override] = field(default_factory=lambda: MappingProxyType({}))
    missing: Mapping[str, str] = field(default_factory=_empty)  # rule id → why not evaluated
    intervals: Mapping[tuple[str, str], Interval] | None = None  # None: the rule file's
    profile: str = ""  # names the limits used ("" : the rule file's profile)
    notes: tuple[str, ...] = ()  # lines for the conclusion: which limits, whose


def clinical_context(
    message: LabMessage,
    report: LabReport,
    rule_set: RuleSet,
    deployment: Deployment,
    *,
    now: datetime,
    observed: tuple[PatientLimit, LabObservation] | None = None,
) -> tuple[ClinicalContext, list[Issue]]:
    """The context of one report (``observed``: a patient-limit Observation it holds)."""
    patient = message.patient
    issues: list[Issue] = []
    limit = _patient_limit(patient, deployment, observed, issues)
    band, undecided = _age_band(message, report, deployment.paediatric, now, issues)
    if undecided:
        missing = {rule.id: undecided for rule in rule_set.rules}
        return ClinicalContext(missing=MappingProxyType(missing)), issues
    if band is None:
        return _adult(rule_set, deployment, limit), issues
    return _child(rule_set, deployment.paediatric, band, limit), issues


def _adult(
    rule_set: RuleSet, deployment: Deployment, limit: PatientLimit | None
) -> ClinicalContext:
    overrides: dict[str, Override] = {}
    notes: list[str] = []
    intervals = deployment.intervals
    if limit is not None:
        overrides[NEUTROPENIA] = _patient_override(limit, notes)
    elif deployment.anc_below is not None:
        basis = f"deployment profile {deployment.label}"
        overrides[NEUTROPENIA] = Override(deployment.anc_below, basis)
        notes.append(
            f"Neutropenia is judged against the lower ANC limit {deployment.anc_below}"
            f" 10*9/L of the {basis} ({deployment.anc_source})."
        )
    if limit is not None:  # the low end of the ANC interval too (L/N/H agree with it)
        base = intervals if intervals is not None else rule_set.profile.intervals
        if _ANC in base:
            intervals = _with_anc_low(base, limit.below)
    return ClinicalContext(
        overrides=MappingProxyType(overrides),
        intervals=intervals,
        profile=deployment.label if deployment.intervals is not None else "",
        notes=tuple(notes),
    )


def _child(
    rule_set: RuleSet, profile: PaediatricProfile, band: AgeBand, limit: PatientLimit | None
) -> ClinicalContext:
    basis = f"age band {band.name}, {profile.label}"
    overrides: dict[str, Override] = {}
    missing: dict[str, str] = {}
    for rule in rule_set.rules:
        if isinstance(rule, TrendRule):
            if not rule.children:
                missing[rule.id] = (
                    f"patient aged {band.name}: this trend rule is for adults (its limit"
                    f" {rule.now_below} {rule.unit} is no paediatric limit)"
                )
            continue
        if (found := band.limits.get(rule.id)) is not None:
            overrides[rule.id] = Override(found.limit, basis)
        else:
            missing[rule.id] = (
                f"patient aged {band.name} ({profile.label}): {profile.why_missing(band, rule.id)};"
                " the adult limit is not applied to a child"
            )
    notes = [f"Limits for age band {band.name} ({profile.label}), not the adult limits."]
    intervals: Mapping[tuple[str, str], Interval] = band.intervals
    if limit is not None:
        overrides[NEUTROPENIA] = _patient_override(limit, notes)
        missing.pop(NEUTROPENIA, None)
        if _ANC in intervals:
            intervals = _with_anc_low(intervals, limit.below)
    return ClinicalContext(
        overrides=MappingProxyType(overrides),
        missing=MappingProxyType(missing),
        intervals=intervals,
        profile=f"{profile.label}, age band {band.name}",
        notes=tuple(notes),
    )


def _patient_override(limit: PatientLimit, notes: list[str]) -> Override:
    notes.append(
        f"Neutropenia is judged against this patient's own lower ANC limit {limit.below}"
        f" 10*9/L ({limit.basis}; from {limit.origin})."
    )
    return Override(limit.below, f"this patient ({limit.basis})")


def _with_anc_low(
    intervals: Mapping[tuple[str, str], Interval], low: Decimal
) -> Mapping[tuple[str, str], Interval]:
    anc = intervals[_ANC]
    changed = dict(intervals)
    changed[_ANC] = replace(anc, low=low, high=max(anc.high, low))
    return MappingProxyType(changed)


def _patient_limit(
    patient: Patient | None,
    deployment: Deployment,
    observed: tuple[PatientLimit, LabObservation] | None,
    issues: list[Issue],
) -> PatientLimit | None:
    filed = deployment.patient_limit(patient.identifiers) if patient is not None else None
    if observed is None:
        return filed
    limit, obs = observed
    if filed is not None and filed.below != limit.below:
        issues.append(
            warning(
                ErrorCode.ACCEPTED,
                f"{obs.location} gives the patient's lower ANC limit as {limit.below} 10*9/L,"
                f" the deployment's {filed.origin} as {filed.below}; the report's is used",
                obs.location.at(5) if not obs.location.expression else obs.location,
                fhir_type="business-rule",
            )
        )
    return limit


def _age_band(
    message: LabMessage,
    report: LabReport,
    profile: PaediatricProfile,
    now: datetime,
    issues: list[Issue],
) -> tuple[AgeBand | None, str]:
    """(the child's band, or None for an adult or an unknown age; the reason when the band
    cannot be decided)."""
    patient = message.patient
    fhir = message.source_format == "fhir"
    where = Location(expression="Patient.birthDate") if fhir else Location("PID", 1).at(7)
    birth = patient.birth_date if patient is not None else ""
    if not birth:
        issues.append(_unknown_age("no birth date was sent", where))
        return None, ""
    collected = report.effective
    if not collected:
        collected = report.issued or message.sent_at
        if collected:
            field = "the report time" if report.issued else "the message time"
            issues.append(
                warning(
                    ErrorCode.REQUIRED_FIELD_MISSING,
                    f"{report.location}: no collection time; the patient's age is counted to"
                    f" {field}, which may be later",
                    report.location.at(7) if not fhir else report.location,
                    fhir_type="incomplete",
                )
            )
        else:
            # the age at collection is at most the age today: certainly a child if that is
            at_now = _span(birth, now.isoformat()[:10])
            if at_now is not None and at_now[1] is not None and profile.band(at_now[1]):
                return None, (
                    "no collection time was sent and the patient is under 18: the age band"
                    " cannot be decided"
                )
            issues.append(_unknown_age("no collection time was sent", report.location))
            return None, ""
    span = _span(birth, collected)
    if span is None:
        issues.append(_unknown_age(f"the birth date {birth!r} cannot be read", where))
        return None, ""
    youngest, oldest = span
    if youngest is None or oldest is None:
        return None, (
            f"the birth date {birth} is after the collection date: the patient's age cannot"
            " be computed"
        )
    young_band, old_band = profile.band(youngest), profile.band(oldest)
    if young_band is not old_band:
        return None, (
            f"the birth date {birth} is not precise enough to decide the patient's age band"
            f" ({_name(young_band)} or {_name(old_band)})"
        )
    return young_band, ""


def _span(birth: str, collected: str) -> tuple[Age | None, Age | None] | None:
    return age_span(birth, collected)


def _name(band: AgeBand | None) -> str:
    return band.name if band is not None else "adult"


def _unknown_age(why: str, where: Location) -> Issue:
    return warning(
        ErrorCode.REQUIRED_FIELD_MISSING,
        f"{why}: the patient's age is not known, so the report is evaluated with the adult"
        " limits of the rule set; a child's counts may be misjudged",
        where,
        fhir_type="incomplete",
    )

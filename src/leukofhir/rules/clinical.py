"""Who the limits are for: a report's :class:`ClinicalContext` (pure).

From the patient's birth date and the collection date (:mod:`.age`), the paediatric
profile (:mod:`.paediatric`), the deployment (:mod:`.deployment`) and a patient-limit
Observation in the report (:mod:`.patient_limit`):

* an adult (18 or older on the collection day), or a patient of unknown age, keeps the
  rule file's limits (the deployment's adult ANC limit and intervals where it sets them);
  an unknown age gets a warning saying so;
* a child gets their band's limits; a finding the band has no limit for is not evaluated,
  with the reason; a trend rule not made for children is not evaluated either;
* a patient whose band cannot be decided (a birth date known only to the year or month
  across a band edge) is evaluated with each limit every possible band agrees on; the
  other findings are not evaluated, with the reason and a located warning (critical
  values are evaluated at every age all the same); a birth date after the collection is
  an unknown age (adult limits, with a warning);
* a patient's own lower ANC limit (the report's Observation first, else the deployment's
  patient file) replaces the neutropenia threshold at any age.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from types import MappingProxyType
from typing import NamedTuple

from leukofhir.errors import ErrorCode, Issue, Location, warning
from leukofhir.model import Analyte, LabMessage, LabObservation, LabReport, Measure, Patient
from leukofhir.rules.age import Age, age_span
from leukofhir.rules.deployment import Deployment, PatientLimit
from leukofhir.rules.paediatric import AgeBand, PaediatricProfile
from leukofhir.rules.ruleset import Interval, RuleSet, ThresholdRule, TrendRule, interval_key

__all__ = ["ClinicalContext", "Override", "clinical_context"]

NEUTROPENIA = "neutropenia"
_ANC = interval_key(Analyte.NEUTROPHILS, Measure.COUNT)


class Override(NamedTuple):
    """Another limit than the rule file's for one finding, and whose it is."""

    limit: Decimal
    basis: str  # "age band 3-12 months, paediatric 1.0.0"


class ClinicalContext(NamedTuple):
    """What :func:`~leukofhir.rules.evaluate` applies besides the rule file."""

    overrides: Mapping[str, Override] = MappingProxyType({})  # shared, read-only
    missing: Mapping[str, str] = MappingProxyType({})  # rule id → why not evaluated
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
    context, issues = _context(message, report, rule_set, deployment, now, limit, issues)
    if report.effective:
        return context, issues
    # no collection time: a trend compares collection times, never report or message times
    where = "DiagnosticReport.effective[x]" if message.source_format == "fhir" else "OBR-7"
    reason = (
        f"no collection time was sent ({where}): a trend compares collection times, and the"
        " report or message time is not one"
    )
    missing = dict(context.missing)
    for rule in rule_set.rules:
        if isinstance(rule, TrendRule):
            missing.setdefault(rule.id, reason)
    return context._replace(missing=MappingProxyType(missing)), issues


def _context(
    message: LabMessage,
    report: LabReport,
    rule_set: RuleSet,
    deployment: Deployment,
    now: datetime,
    limit: PatientLimit | None,
    issues: list[Issue],
) -> tuple[ClinicalContext, list[Issue]]:
    found = _age_band(message, report, deployment.paediatric, now, issues)
    if found.candidates:
        return _undecided(rule_set, deployment, found, limit), issues
    if found.band is None:
        context = _adult(rule_set, deployment, limit)
        if found.unknown:
            note = (
                f"The adult limits of the rule set were used because the patient's age is"
                f" not known ({found.unknown}); a child's counts may be misjudged."
            )
            context = context._replace(notes=(note, *context.notes))
        return context, issues
    return _child(rule_set, deployment.paediatric, found.band, limit), issues


class _Found(NamedTuple):
    """The patient's age band: ``band`` (None: an adult or an unknown age, ``unknown`` then
    says why it is unknown), or the ``candidates`` (None: adult) when it cannot be decided,
    with ``undecided``, the reason."""

    band: AgeBand | None = None
    unknown: str = ""
    candidates: tuple[AgeBand | None, ...] = ()
    undecided: str = ""


def _adult_limit(
    rule: ThresholdRule, deployment: Deployment, limit: PatientLimit | None
) -> Decimal:
    if rule.id == NEUTROPENIA and limit is not None:
        return limit.below
    if rule.id == NEUTROPENIA and deployment.anc_below is not None:
        return deployment.anc_below
    return rule.threshold


def _undecided(
    rule_set: RuleSet, deployment: Deployment, found: _Found, limit: PatientLimit | None
) -> ClinicalContext:
    """An age band that cannot be decided: a finding is evaluated with its limit where
    every possible band (or the adult limits) gives the same one; otherwise it is not
    evaluated, with the reason (critical values are evaluated all the same: see
    :func:`leukofhir.rules.evaluate`).  The interpretation uses only the intervals every
    possible band agrees on."""
    profile = deployment.paediatric
    names = " or ".join(_name(band) for band in found.candidates)
    basis = f"age band {names} (the same limit in each; {profile.label})"
    overrides: dict[str, Override] = {}
    missing: dict[str, str] = {}
    for rule in rule_set.rules:
        if isinstance(rule, TrendRule):
            if not rule.children:
                missing[rule.id] = f"{found.undecided}; this trend rule is for adults only"
            continue
        if not isinstance(rule, ThresholdRule):
            missing[rule.id] = f"{found.undecided}; this finding has no paediatric limit"
            continue
        limits: set[Decimal | None] = set()
        for band in found.candidates:
            if band is None:
                limits.add(_adult_limit(rule, deployment, limit))
            else:
                band_limit = band.limits.get(rule.id)
                limits.add(band_limit.limit if band_limit is not None else None)
        (only,) = limits if len(limits) == 1 else (None,)
        if only is None:
            missing[rule.id] = (
                f"{found.undecided}, and the possible bands do not give this finding the same limit"
            )
        else:
            overrides[rule.id] = Override(only, basis)
    adult_intervals = (
        deployment.intervals if deployment.intervals is not None else rule_set.profile.intervals
    )
    each = [adult_intervals if b is None else b.intervals for b in found.candidates]
    notes = [
        f"The patient's age band could not be decided ({found.undecided}): a finding is"
        f" evaluated only where every possible band ({names}) gives it the same limit;"
        " critical values are evaluated at every age."
    ]
    intervals = _for_patient(
        MappingProxyType(
            {k: v for k, v in each[0].items() if all(other.get(k) == v for other in each[1:])}
        ),
        limit,
        overrides,
        missing,
        notes,
    )
    return ClinicalContext(
        overrides=MappingProxyType(overrides),
        missing=MappingProxyType(missing),
        intervals=intervals,
        profile=f"{profile.label}, age band undecided ({names})",
        notes=tuple(notes),
    )


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
    intervals = _for_patient(band.intervals, limit, overrides, missing, notes)
    return ClinicalContext(
        overrides=MappingProxyType(overrides),
        missing=MappingProxyType(missing),
        intervals=intervals,
        profile=f"{profile.label}, age band {band.name}",
        notes=tuple(notes),
    )


def _for_patient(
    intervals: Mapping[tuple[str, str], Interval],
    limit: PatientLimit | None,
    overrides: dict[str, Override],
    missing: dict[str, str],
    notes: list[str],
) -> Mapping[tuple[str, str], Interval]:
    """A child's (or undecided band's) limits with the patient's own ANC limit, if any: it
    decides neutropenia and is the low end of the ANC interval."""
    if limit is None:
        return intervals
    overrides[NEUTROPENIA] = _patient_override(limit, notes)
    missing.pop(NEUTROPENIA, None)
    return _with_anc_low(intervals, limit.below) if _ANC in intervals else intervals


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
    changed[_ANC] = anc._replace(low=low, high=max(anc.high, low))
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
) -> _Found:
    """The patient's age band on the collection day (see :class:`_Found`); every age it
    cannot decide is said by a located warning."""
    patient = message.patient
    fhir = message.source_format == "fhir"
    where = Location(expression="Patient.birthDate") if fhir else Location("PID", 1).at(7)
    birth = patient.birth_date if patient is not None else ""
    if not birth:
        issues.append(_unknown_age("no birth date was sent", where))
        return _Found(unknown="no birth date was sent")
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
                upto = profile.band(at_now[1])
                assert upto is not None
                before = tuple(profile.bands[: profile.bands.index(upto) + 1])
                why = (
                    "no collection time was sent and the patient is under 18: the age band"
                    " cannot be decided"
                )
                issues.append(_undecided_age(why, report.location))
                return _Found(candidates=before, undecided=why)
            why = "no collection time was sent"
            issues.append(_unknown_age(why, report.location))
            return _Found(unknown=why)
    span = _span(birth, collected)
    if span is None:
        why = f"the birth date {birth!r} cannot be read"
        issues.append(_unknown_age(why, where))
        return _Found(unknown=why)
    youngest, oldest = span
    if youngest is None or oldest is None:
        why = f"the birth date {birth} is after the collection date {collected[:10]}"
        issues.append(_unknown_age(why, where))
        return _Found(unknown=why)
    young_band, old_band = profile.band(youngest), profile.band(oldest)
    if young_band is not old_band:
        assert young_band is not None  # the younger end is a child when the ends differ
        first = profile.bands.index(young_band)
        possible: tuple[AgeBand | None, ...]
        if old_band is None:
            possible = (*profile.bands[first:], None)
        else:
            possible = profile.bands[first : profile.bands.index(old_band) + 1]
        why = (
            f"the birth date {birth} is not precise enough to decide the patient's age band"
            f" ({_name(young_band)} to {_name(old_band)})"
        )
        issues.append(_undecided_age(why, where))
        return _Found(candidates=possible, undecided=why)
    return _Found(band=young_band)


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


def _undecided_age(why: str, where: Location) -> Issue:
    return warning(
        ErrorCode.REQUIRED_FIELD_MISSING,
        f"{why}: a finding is evaluated only where every possible age band gives it the"
        " same limit, critical values at every age; the others are not evaluated",
        where,
        fhir_type="incomplete",
    )

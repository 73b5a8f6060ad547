"""One rule applied to one CBC: a Finding, a NotEvaluated, or nothing (the finding is absent).

The three-valued comparisons of :mod:`leukofhir.rules.compare` carry open bounds
through: a rule reports a finding only when it is decided (and, for a graded rule,
its grade and band too), reports nothing only when its absence is decided, and
otherwise says "not evaluated", with a warning when an open bound was the cause.
"""

from __future__ import annotations

from collections.abc import Sequence

from leukofhir.errors import ErrorCode, Issue, Location, warning
from leukofhir.model import Analyte, Cbc, CbcValue, Evidence, Finding, Measure, NotEvaluated
from leukofhir.rules.compare import above, below
from leukofhir.rules.ruleset import Band, Grade, PancytopeniaRule, RuleSet, ThresholdRule
from leukofhir.rules.values import Missing, resolve, shown
from leukofhir.terminology.normalise import at_field

__all__ = ["Outcome", "apply_pancytopenia", "apply_threshold", "critical_values"]

Outcome = tuple[Finding | NotEvaluated | None, Issue | None]


def critical_values(cbc: Cbc, rule_set: RuleSet) -> tuple[CbcValue, ...]:
    """The values below a critical limit (WBC < 2.0, ANC < 0.5), decided despite any bound."""
    found: list[CbcValue] = []
    for limit in rule_set.critical:
        value = cbc.get(limit.analyte, Measure.COUNT)
        if (
            value is not None
            and value.number is not None
            and not value.problem
            and below(value.number, value.comparator, limit.below)
        ):
            found.append(value)
    return tuple(found)


def _open_bound(rule_id: str, value: CbcValue, reason: str) -> Outcome:
    """Not evaluated because an open bound cannot decide, with its warning."""
    location = value.observation.location if value.observation else None
    issue = warning(
        ErrorCode.ACCEPTED,
        f"{rule_id}: not evaluated — {reason}",
        at_field(location, 5) if location else Location(),
        fhir_type="business-rule",
    )
    return NotEvaluated(rule_id, reason, location), issue


def _step(value: CbcValue, steps: Sequence[Grade | Band]) -> int | None:
    """The index of the first (most severe) step whose bound holds; None when undecided."""
    assert value.number is not None
    for index, step in enumerate(steps):
        holds = below(value.number, value.comparator, step.below)
        if holds is None:
            return None
        if holds:
            return index
    return None


def _grade_text(grades: tuple[Grade, ...], index: int) -> str:
    grade = grades[index]
    if index == 0:
        return f"; CTCAE grade {grade.grade}: < {grade.below}"
    return f"; CTCAE grade {grade.grade}: {grades[index - 1].below} to < {grade.below}"


def apply_threshold(
    rule: ThresholdRule,
    cbc: Cbc,
    rule_set: RuleSet,
    critical: tuple[CbcValue, ...],
    *,
    basis: str = "",
) -> Outcome:
    """``basis``: whose limit ``rule`` carries when it is not the rule file's (an age
    band's, a patient's); it is written into the finding's text and evidence."""
    value = resolve(cbc, rule.analyte, Measure.COUNT, rule_set)
    if isinstance(value, Missing):
        return NotEvaluated(rule.id, value.reason, value.location), None
    assert value.number is not None
    label = rule.label
    symbol, test = ("<", below) if rule.kind == "below" else (">", above)
    limit = f"{symbol} {rule.threshold} {rule.unit}"
    present = test(value.number, value.comparator, rule.threshold)
    if present is None:
        return _open_bound(
            rule.id,
            value,
            f"the {label} {shown(value)} is an open bound: it cannot be"
            f" decided whether it is {limit}",
        )
    if not present:
        return None, None
    grade_index = _step(value, rule.grades) if rule.grades else None
    band_index = _step(value, rule.bands) if rule.bands else None
    if rule.grades and grade_index is None:
        return _ungraded(rule, rule_set, value, limit, critical, basis)
    grade = rule.grades[grade_index].grade if grade_index is not None else None
    band = rule.bands[band_index].band if band_index is not None else ""
    threshold = f"{limit} ({rule.id}; {basis})" if basis else f"{limit} ({rule.id})"
    if grade_index is not None:
        threshold += _grade_text(rule.grades, grade_index)
    is_critical = any(value is other for other in critical)
    text = rule.name
    if grade is not None:
        template = rule_set.texts.graded_band if band else rule_set.texts.graded
        text = template.format(name=rule.name, grade=grade, band=band)
    text = _limited(rule_set, text, rule, symbol, basis)
    return _finding(rule, rule_set, text, grade, band, is_critical, (Evidence(value, threshold),))


def _limited(rule_set: RuleSet, text: str, rule: ThresholdRule, symbol: str, basis: str) -> str:
    """The finding's text naming the limit it was judged by, when not the rule file's."""
    if not basis:
        return text
    return rule_set.texts.limited.format(
        text=text, symbol=symbol, limit=rule.threshold, unit=rule.unit, basis=basis
    )


def _possible_grades(value: CbcValue, grades: Sequence[Grade]) -> list[int]:
    """The CTCAE grades an open bound leaves possible (the finding itself is decided).

    ``grades`` run from the most severe (lowest ``below``) up; grade i covers
    [grades[i-1].below, grades[i].below).  ``<x`` reaches every grade from the one
    holding x down to the most severe; ``>x`` every grade from the one holding x up.
    """
    assert value.number is not None
    x, comparator = value.number, value.comparator
    possible = []
    for index, step in enumerate(grades):
        lower = grades[index - 1].below if index else None
        if comparator in ("<", "<="):
            reachable = lower is None or lower < x or (comparator == "<=" and lower == x)
        else:
            reachable = x < step.below
        if reachable:
            possible.append(step.grade)
    return possible


def _ungraded(
    rule: ThresholdRule,
    rule_set: RuleSet,
    value: CbcValue,
    limit: str,
    critical: tuple[CbcValue, ...],
    basis: str = "",
) -> Outcome:
    """A finding an open bound decides without deciding its grade (WBC '<3.5': leukopenia,
    grade 1 to 4): reported ungraded, with the priority of the most severe grade still
    possible, never a lower one, and a warning that says why the grade is missing."""
    possible = _possible_grades(value, rule.grades)
    span = f"{min(possible)} to {max(possible)}" if len(possible) > 1 else f"{possible[0]}"
    text = f"{rule.name}, CTCAE grade {span} (not decidable from an open bound)"
    text = _limited(rule_set, text, rule, "<" if rule.kind == "below" else ">", basis)
    where = f"{rule.id}; {basis}" if basis else rule.id
    threshold = f"{limit} ({where}); the open bound allows CTCAE grade {span}"
    is_critical = any(value is other for other in critical)
    severity = {"PL": 0, "PM": 1, "PH": 2}
    priority = max((rule_set.grade_priority[g] for g in possible), key=lambda p: severity[p])
    finding, _ = _finding(
        rule,
        rule_set,
        text,
        None,
        "",
        is_critical,
        (Evidence(value, threshold),),
        priority=priority,
    )
    location = value.observation.location if value.observation else None
    issue = warning(
        ErrorCode.ACCEPTED,
        f"{rule.id}: the {rule.label} {shown(value)} is an open bound: the finding is"
        f" certain, its CTCAE grade is not (grade {span}); reported without grade,"
        " at the priority of the most severe possible grade",
        at_field(location, 5) if location else Location(),
        fhir_type="business-rule",
    )
    return finding, issue


def _finding(
    rule: ThresholdRule | PancytopeniaRule,
    rule_set: RuleSet,
    text: str,
    grade: int | None,
    band: str,
    critical: bool,
    evidence: tuple[Evidence, ...],
    *,
    priority: str = "",
) -> Outcome:
    if critical:
        priority = rule_set.critical_priority
        text = rule_set.texts.critical.format(text=text)
    elif grade is not None:
        priority = rule_set.grade_priority[grade]
    elif not priority:
        priority = rule.priority
    finding = Finding(
        rule.id,
        rule.code,
        text,
        grade,
        band,
        priority,
        critical,
        evidence,
        rule.considerations,
        rule.next_steps,
    )
    return finding, None


def apply_pancytopenia(
    rule: PancytopeniaRule, cbc: Cbc, rule_set: RuleSet, critical: tuple[CbcValue, ...], sex: str
) -> Outcome:
    lead = rule_set.rule(rule.requires)
    assert isinstance(lead, ThresholdRule)  # checked when the rule file was loaded
    sex = sex.strip().lower()
    hemoglobin_limit = rule.hemoglobin_below.get(sex) or rule.hemoglobin_below["default"]
    who = f"sex {sex}" if sex in rule.hemoglobin_below and sex != "default" else "sex not known"
    parts = (
        (Analyte.WBC, lead.threshold, lead.unit, f"({lead.id})"),
        (Analyte.HEMOGLOBIN, hemoglobin_limit, rule.hemoglobin_unit, f"(hemoglobin, {who})"),
        (Analyte.PLATELETS, rule.platelets_below, rule.platelets_unit, "(platelets)"),
    )
    evidence: list[Evidence] = []
    undecided: list[tuple[str, Location | None, bool]] = []  # reason, where, an open bound
    for analyte, limit, unit, why in parts:
        measure = Measure.MASS_CONCENTRATION if analyte is Analyte.HEMOGLOBIN else Measure.COUNT
        value = resolve(cbc, analyte, measure, rule_set)
        if isinstance(value, Missing):
            undecided.append((value.reason, value.location, False))
            continue
        assert value.number is not None
        holds = below(value.number, value.comparator, limit)
        if holds is False:
            return None, None  # one part decided absent: no pancytopenia
        if holds is None:
            label = rule_set.label(analyte, measure)
            reason = f"the {label} {shown(value)} is an open bound: it cannot be decided whether"
            undecided.append((f"{reason} it is < {limit} {unit}", _line(value), True))
            continue
        evidence.append(Evidence(value, f"< {limit} {unit} {why}"))
    if undecided:
        reason = "; ".join(item[0] for item in undecided)
        location = next((item[1] for item in undecided if item[1] is not None), None)
        issue = None
        if any(item[2] for item in undecided):
            issue = warning(
                ErrorCode.ACCEPTED,
                f"{rule.id}: not evaluated — {reason}",
                at_field(location, 5) if location else Location(),
                fhir_type="business-rule",
            )
        return NotEvaluated(rule.id, reason, location), issue
    is_critical = any(item.value is other for item in evidence for other in critical)
    return _finding(rule, rule_set, rule.name, None, "", is_critical, tuple(evidence))


def _line(value: CbcValue) -> Location | None:
    return value.observation.location if value.observation else None

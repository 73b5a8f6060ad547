"""Cbc → Evaluation: every rule of the rule set, the interpretations, the disclaimer."""

from __future__ import annotations

from leukofhir.errors import Issue
from leukofhir.model import Cbc, CbcValue, Evaluation, Finding, Measure, NotEvaluated
from leukofhir.rules.clinical import ClinicalContext, Override
from leukofhir.rules.compare import below
from leukofhir.rules.findings import apply_pancytopenia, apply_threshold, critical_values
from leukofhir.rules.interpret import interpretations
from leukofhir.rules.limit import with_limit
from leukofhir.rules.ruleset import PancytopeniaRule, Rule, RuleSet, ThresholdRule, TrendRule
from leukofhir.rules.values import Missing, resolve

__all__ = ["evaluate"]

_ADULT = ClinicalContext()


def evaluate(
    cbc: Cbc, rule_set: RuleSet, *, sex: str = "", clinical: ClinicalContext = _ADULT
) -> Evaluation:
    """The findings of ``cbc`` under ``rule_set``; pure.

    ``sex`` is the patient's FHIR administrative gender (``female``, ``male``, ``other``,
    ``unknown``) or ``""``; it only chooses pancytopenia's hemoglobin limit.  ``clinical``
    says which limits apply to this patient (their age band, their own ANC limit) and
    which findings are not evaluated for them (:mod:`leukofhir.rules.clinical`).  Trend
    rules are left to the lifecycle, which knows the patient's earlier reports.
    """
    critical = critical_values(cbc, rule_set)
    findings: list[Finding] = []
    not_evaluated: list[NotEvaluated] = []
    issues: list[Issue] = []
    absent: list[str] = []
    for rule in rule_set.rules:
        if (reason := clinical.missing.get(rule.id)) is not None:
            outcome, issue = _critical_only(rule, cbc, rule_set, critical, reason)
        elif isinstance(rule, ThresholdRule):
            override = _at_least_critical(rule, rule_set, clinical.overrides.get(rule.id))
            if override is None:
                outcome, issue = apply_threshold(rule, cbc, rule_set, critical)
            else:
                limited = with_limit(rule, override.limit)
                outcome, issue = apply_threshold(
                    limited, cbc, rule_set, critical, basis=override.basis
                )
        elif isinstance(rule, PancytopeniaRule):
            outcome, issue = apply_pancytopenia(rule, cbc, rule_set, critical, sex)
        else:  # a trend rule: the lifecycle's, unless the patient's own limit decides it
            if _not_below_own_limit(rule, cbc, rule_set, clinical):
                absent.append(rule.id)
            continue
        if isinstance(outcome, Finding):
            findings.append(outcome)
        elif outcome is not None:
            not_evaluated.append(outcome)
        if issue is not None:
            issues.append(issue)
    return Evaluation(
        rule_set_id=rule_set.id,
        rule_set_version=rule_set.version,
        findings=tuple(findings),
        not_evaluated=tuple(not_evaluated),
        interpretations=interpretations(cbc, rule_set, critical, clinical.intervals),
        issues=tuple(issues),
        disclaimer=rule_set.disclaimer,
        profile=clinical.profile or rule_set.profile.label,
        notes=clinical.notes,
        absent=tuple(absent),
    )


CRITICAL_BASIS = "critical values, which are evaluated at every age"


def _critical_only(
    rule: Rule,
    cbc: Cbc,
    rule_set: RuleSet,
    critical: tuple[CbcValue, ...],
    reason: str,
) -> tuple[Finding | NotEvaluated | None, Issue | None]:
    """A finding the patient's limits do not evaluate (no limit in a child's band, an age
    band that cannot be decided) is still evaluated for a critical value: a low-count rule
    on a count with a critical limit (WBC < 2.0, ANC < 0.5) is judged by that limit (or by
    its own, when lower: agranulocytosis < 0.2), so a critical value is never dropped."""
    if not isinstance(rule, ThresholdRule) or rule.kind != "below":
        return NotEvaluated(rule.id, reason), None
    floor = rule_set.critical_below(rule.analyte)
    if floor is None:
        return NotEvaluated(rule.id, reason), None
    limit = min(rule.threshold, floor)
    outcome, issue = apply_threshold(
        with_limit(rule, limit), cbc, rule_set, critical, basis=CRITICAL_BASIS
    )
    if isinstance(outcome, Finding):
        return outcome, issue
    if outcome is None:  # evaluated and not critical: the rest is still not evaluated
        reason = (
            f"{reason}; only critical values (< {limit} {rule.unit}) are evaluated, and"
            " this one is not below that limit"
        )
        return NotEvaluated(rule.id, reason), issue
    return NotEvaluated(rule.id, f"{reason}; {outcome.reason}", outcome.location), issue


def _at_least_critical(
    rule: ThresholdRule, rule_set: RuleSet, override: Override | None
) -> Override | None:
    """Another lower limit never hides a critical value: a limit below the critical limit
    of its count (refused where limits are read; this is the last guard) is raised to it."""
    if override is None or rule.kind != "below":
        return override
    floor = rule_set.critical_below(rule.analyte)
    if floor is None or rule.threshold < floor or override.limit >= floor:
        return override
    return Override(floor, f"{override.basis}; raised to the critical limit {floor}")


def _not_below_own_limit(
    rule: TrendRule, cbc: Cbc, rule_set: RuleSet, clinical: ClinicalContext
) -> bool:
    """A fall rule's "now below" is the limit of the count in force for the patient: where
    the patient's (or the deployment's) own limit replaces the rule file's limit that the
    trend's ``now_below`` repeats (neutropenia's 1.5 for anc-fall), a count that is not
    below the patient's limit is no trend finding (decided here; otherwise the lifecycle
    decides with ``now_below``, which the accepted range keeps at or above the patient's)."""
    for other in rule_set.rules:
        if (
            isinstance(other, ThresholdRule)
            and other.kind == "below"
            and other.analyte is rule.analyte
            and other.threshold == rule.now_below
            and (override := clinical.overrides.get(other.id)) is not None
            and override.limit < rule.now_below
        ):
            value = resolve(cbc, rule.analyte, Measure.COUNT, rule_set)
            if isinstance(value, Missing) or value.number is None:
                return False
            return below(value.number, value.comparator, override.limit) is False
    return False

"""Cbc → Evaluation: every rule of the rule set, the interpretations, the disclaimer."""

from __future__ import annotations

from leukofhir.errors import Issue
from leukofhir.model import Cbc, Evaluation, Finding, NotEvaluated
from leukofhir.rules.clinical import ClinicalContext
from leukofhir.rules.findings import apply_pancytopenia, apply_threshold, critical_values
from leukofhir.rules.interpret import interpretations
from leukofhir.rules.limit import with_limit
from leukofhir.rules.ruleset import PancytopeniaRule, RuleSet, ThresholdRule

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
    for rule in rule_set.rules:
        if (reason := clinical.missing.get(rule.id)) is not None:
            not_evaluated.append(NotEvaluated(rule.id, reason))
            continue
        if isinstance(rule, ThresholdRule):
            override = clinical.overrides.get(rule.id)
            if override is None:
                outcome, issue = apply_threshold(rule, cbc, rule_set, critical)
            else:
                limited = with_limit(rule, override.limit)
                outcome, issue = apply_threshold(
                    limited, cbc, rule_set, critical, basis=override.basis
                )
        elif isinstance(rule, PancytopeniaRule):
            outcome, issue = apply_pancytopenia(rule, cbc, rule_set, critical, sex)
        else:
            continue  # a trend rule: the lifecycle's
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
    )

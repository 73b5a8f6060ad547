"""Cbc → Evaluation: every rule of the rule set, the interpretations, the disclaimer."""

from __future__ import annotations

from leukofhir.errors import Issue
from leukofhir.model import Cbc, Evaluation, Finding, NotEvaluated
from leukofhir.rules.findings import apply_pancytopenia, apply_threshold, critical_values
from leukofhir.rules.interpret import interpretations
from leukofhir.rules.ruleset import RuleSet, ThresholdRule

__all__ = ["evaluate"]


def evaluate(cbc: Cbc, rule_set: RuleSet, *, sex: str = "") -> Evaluation:
    """The findings of ``cbc`` under ``rule_set``; pure.

    ``sex`` is the patient's FHIR administrative gender (``female``, ``male``, ``other``,
    ``unknown``) or ``""``; it only chooses pancytopenia's hemoglobin limit.
    """
    critical = critical_values(cbc, rule_set)
    findings: list[Finding] = []
    not_evaluated: list[NotEvaluated] = []
    issues: list[Issue] = []
    for rule in rule_set.rules:
        if isinstance(rule, ThresholdRule):
            outcome, issue = apply_threshold(rule, cbc, rule_set, critical)
        else:
            outcome, issue = apply_pancytopenia(rule, cbc, rule_set, critical, sex)
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
        interpretations=interpretations(cbc, rule_set, critical),
        issues=tuple(issues),
        disclaimer=rule_set.disclaimer,
        profile=rule_set.profile.label,
    )

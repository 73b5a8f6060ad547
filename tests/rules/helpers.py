"""Evaluate a CBC built from lines, and pick findings out of the result."""

from __future__ import annotations

from leukofhir.model import Evaluation, Finding, LabObservation, NotEvaluated
from leukofhir.rules import evaluate, load_rule_set
from leukofhir.terminology import build_cbc, load_terminology
from tests.terminology.builders import report

TERMINOLOGY = load_terminology()
RULES = load_rule_set()


def evaluate_lines(*lines: LabObservation, sex: str = "") -> Evaluation:
    return evaluate(build_cbc(report(*lines), TERMINOLOGY), RULES, sex=sex)


def finding(evaluation: Evaluation, rule_id: str) -> Finding | None:
    return next((f for f in evaluation.findings if f.rule_id == rule_id), None)


def not_evaluated(evaluation: Evaluation, rule_id: str) -> NotEvaluated | None:
    return next((n for n in evaluation.not_evaluated if n.rule_id == rule_id), None)

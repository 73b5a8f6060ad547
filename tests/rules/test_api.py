"""The public API of terminology and rules, pinned (others build on these names)."""

from __future__ import annotations

import inspect

import leukofhir.rules
import leukofhir.terminology


def test_terminology_exports() -> None:
    assert sorted(leukofhir.terminology.__all__) == [
        "Field", "Terminology", "Unit", "build_cbc", "load_terminology",
    ]  # fmt: skip
    signature = inspect.signature(leukofhir.terminology.load_terminology)
    assert list(signature.parameters) == ["mapping_files"]
    assert list(inspect.signature(leukofhir.terminology.build_cbc).parameters) == [
        "report", "terminology",
    ]  # fmt: skip


def test_rules_exports() -> None:
    assert {"RuleSet", "evaluate", "load_rule_set"} <= set(leukofhir.rules.__all__)
    evaluate = inspect.signature(leukofhir.rules.evaluate)
    assert list(evaluate.parameters) == ["cbc", "rule_set", "sex", "clinical"]
    assert evaluate.parameters["sex"].kind is inspect.Parameter.KEYWORD_ONLY
    assert evaluate.parameters["sex"].default == ""
    assert list(inspect.signature(leukofhir.rules.load_rule_set).parameters) == ["path"]

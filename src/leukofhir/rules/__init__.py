"""Rules: a :class:`~leukofhir.model.Cbc` → an :class:`~leukofhir.model.Evaluation`.

The rule set is data: ``data/leukopenia-v1.toml`` (thresholds, CTCAE v5.0 grades,
codes, texts, sources, default reference intervals and the deviations from the source
article, each with its reason), loaded once by :func:`load_rule_set`.  Its ``[policy]``
table states how open bounds, half-open bands, missing values and interpretations are
handled; :func:`evaluate` is a pure function of the CBC, the rule set and the sex.
"""

from __future__ import annotations

from leukofhir.rules.evaluate import evaluate
from leukofhir.rules.load import load_rule_set
from leukofhir.rules.ruleset import (
    Band,
    CriticalLimit,
    Deviation,
    Grade,
    Interval,
    PancytopeniaRule,
    Profile,
    Resolution,
    Rule,
    RuleSet,
    Source,
    Texts,
    ThresholdRule,
    TrendRule,
)

__all__ = [
    "Band",
    "CriticalLimit",
    "Deviation",
    "Grade",
    "Interval",
    "PancytopeniaRule",
    "Profile",
    "Resolution",
    "Rule",
    "RuleSet",
    "Source",
    "Texts",
    "ThresholdRule",
    "TrendRule",
    "evaluate",
    "load_rule_set",
]

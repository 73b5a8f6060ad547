"""The v3 ObservationInterpretation of each CBC value (L / N / H, LL when critical).

In order (RULES.md §2): the lab's own flag (OBX-8 / Observation.interpretation: the
first flag that is a v3 code, passed through as sent, even for a value leukofhir does
not use); else, for a usable value, the lab's reference range (OBX-7) compared with
the value *as sent*, in the unit the range is written in; else the profile's default
interval compared with the normalised value.  A critical value (WBC < 2.0, ANC < 0.5)
is LL whatever the other sources say.  A derived count has no flag and no range.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache

from leukofhir.model import Cbc, CbcValue, Interpretation
from leukofhir.rules.ranges import Range, classify, parse_range
from leukofhir.rules.ruleset import Interval, RuleSet

__all__ = ["interpret", "interpretations"]

LAB_FLAG, LAB_RANGE, DEFAULT_RANGE, RULE_SET = "lab-flag", "lab-range", "default-range", "rule-set"


def interpretations(
    cbc: Cbc,
    rule_set: RuleSet,
    critical: tuple[CbcValue, ...],
    intervals: Mapping[tuple[str, str], Interval] | None = None,
) -> tuple[tuple[CbcValue, Interpretation], ...]:
    """(value, interpretation) for every value and superseded value that has one;
    ``intervals`` replace the rule file's profile (a child's age band, a deployment's)."""
    pairs: list[tuple[CbcValue, Interpretation]] = []
    critical_ids = {id(value) for value in critical}
    for value in (*cbc.values, *cbc.superseded):
        found = interpret(value, rule_set, critical=id(value) in critical_ids, intervals=intervals)
        if found is not None:
            pairs.append((value, found))
    return tuple(pairs)


@lru_cache(maxsize=256)
def _interpretation(code: str, display: str, source: str) -> Interpretation:
    """Interpretations are immutable and few: share them rather than rebuild one per value."""
    return Interpretation(code, display, source)


def interpret(
    value: CbcValue,
    rule_set: RuleSet,
    *,
    critical: bool = False,
    intervals: Mapping[tuple[str, str], Interval] | None = None,
) -> Interpretation | None:
    displays = rule_set.interpretations
    if critical:
        code = next(
            (limit.interpretation for limit in rule_set.critical if limit.analyte is value.analyte),
            "LL",
        )
        return _interpretation(code, displays.get(code, code), RULE_SET)
    obs = value.observation
    if obs is not None:
        for flag in obs.abnormal_flags:
            code = flag.strip()
            if (display := displays.get(code)) is None:
                code = code.upper()
                display = displays.get(code)
            if display is not None:
                return _interpretation(code, display, LAB_FLAG)
    if not value.usable or value.number is None:
        return None
    if obs is not None and obs.reference_range and obs.value and obs.value.number is not None:
        normal = parse_range(obs.reference_range.strip())
        if normal is not None:
            code = classify(obs.value.number, obs.value.comparator, normal)
            return _interpretation(code, displays[code], LAB_RANGE) if code else None
    if intervals is None:
        interval = rule_set.profile.interval(value.analyte, value.measure)
    else:
        interval = intervals.get((value.analyte._name_, value.measure._name_))
    if interval is None:
        return None
    code = classify(value.number, value.comparator, Range(interval.low, interval.high))
    return _interpretation(code, displays[code], DEFAULT_RANGE) if code else None

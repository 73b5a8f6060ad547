"""The value a rule reads, or a sentence saying why there is none.

Terminology has already chosen one value per field and derived the missing counts;
when a rule's count is still missing, this module works out why, along the same
paths (the count as sent; WBC × percent; for neutrophils, segmented + band), so that
"not evaluated" names the value at fault: "no absolute neutrophil count sent, and it
cannot be derived: neutrophils % is sent but the WBC is not usable (unit 'xyz' ...)".
"""

from __future__ import annotations

from typing import NamedTuple

from leukofhir.errors import Location
from leukofhir.model import Analyte, Cbc, CbcValue, Measure
from leukofhir.rules.ruleset import RuleSet

__all__ = ["Missing", "resolve", "shown"]

_COUNT, _PERCENT = Measure.COUNT, Measure.PERCENT
_SENT_ONLY = frozenset({Analyte.WBC, Analyte.PLATELETS, Analyte.HEMOGLOBIN})
_ANC_PARTS = (Analyte.SEGMENTED_NEUTROPHILS, Analyte.BAND_NEUTROPHILS)


class Missing(NamedTuple):
    """No usable value: why, and where the value at fault was (when one was sent)."""

    reason: str
    location: Location | None = None


def shown(value: CbcValue) -> str:
    """The value as the lab sent it, quoted: ``'<0.5'``."""
    obs = value.observation
    if obs is not None and obs.value is not None and obs.value.text:
        return repr(obs.value.text)
    return repr(f"{value.comparator}{value.number}")


def _where(value: CbcValue | None) -> Location | None:
    return value.observation.location if value is not None and value.observation else None


def resolve(cbc: Cbc, analyte: Analyte, measure: Measure, rule_set: RuleSet) -> CbcValue | Missing:
    """The usable value of (analyte, measure) in ``cbc``, or why there is none."""
    value = cbc.get(analyte, measure)
    if value is not None and value.usable:
        return value
    label = rule_set.label(analyte, measure)
    if value is not None:
        return Missing(f"the {label} is not usable: {value.problem}", _where(value))
    if measure is not _COUNT or analyte in _SENT_ONLY:
        return Missing(f"no {label} sent")
    percent = cbc.get(analyte, _PERCENT)
    if analyte is Analyte.NEUTROPHILS and percent is None:
        return _anc_parts(cbc, rule_set)
    if percent is None:
        return Missing(f"no {label} or {rule_set.label(analyte, _PERCENT)} sent")
    why, where = _underivable(cbc, percent, rule_set)
    return Missing(f"no {label} sent, and it cannot be derived: {why}", where)


def _underivable(cbc: Cbc, percent: CbcValue, rule_set: RuleSet) -> tuple[str, Location | None]:
    """Why WBC × ``percent`` / 100 gives no count."""
    label = rule_set.label(percent.analyte, _PERCENT)
    if not percent.usable:
        return f"{label} is not usable ({percent.problem})", _where(percent)
    if percent.comparator:
        return f"{label} {shown(percent)} is an open bound", _where(percent)
    wbc = cbc.get(Analyte.WBC, _COUNT)
    if wbc is None:
        return f"{label} is sent but no WBC", None
    if not wbc.usable:
        return f"{label} is sent but the WBC is not usable ({wbc.problem})", _where(wbc)
    if wbc.comparator:
        return f"{label} is sent but the WBC {shown(wbc)} is an open bound", _where(wbc)
    return f"{label} could not be used", _where(percent)  # unreachable: it would be derived


def _anc_parts(cbc: Cbc, rule_set: RuleSet) -> Missing:
    anc = rule_set.label(Analyte.NEUTROPHILS, _COUNT)
    percent = rule_set.label(Analyte.NEUTROPHILS, _PERCENT)
    if not any(cbc.get(part, measure) for part in _ANC_PARTS for measure in (_COUNT, _PERCENT)):
        return Missing(f"no {anc}, {percent} or segmented and band neutrophils sent")
    for part in _ANC_PARTS:
        count = cbc.get(part, _COUNT)
        label = rule_set.label(part, _COUNT)
        if count is not None:
            if not count.usable:
                why, where = f"the {label} is not usable ({count.problem})", _where(count)
            elif count.comparator:
                why, where = f"the {label} {shown(count)} is an open bound", _where(count)
            else:
                continue
        elif (part_percent := cbc.get(part, _PERCENT)) is not None:
            why, where = _underivable(cbc, part_percent, rule_set)
        else:
            why, where = f"no {label} or {rule_set.label(part, _PERCENT)} sent", None
        return Missing(
            f"no {anc} or {percent} sent, and segmented + band neutrophils give none: {why}", where
        )
    return Missing(f"no {anc} could be derived from segmented + band neutrophils")

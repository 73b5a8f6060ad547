"""The plausibility of a differential as a whole: its percents must sum to about 100.

The five parts are neutrophils (or segmented + band neutrophils when no neutrophil
percent is usable), lymphocytes, monocytes, eosinophils and basophils.  Each part is
an interval: a sent exact percent is itself, an open bound ``<1`` is 0–1 and ``>90``
is 90–100, a part not sent (or unusable) is 0–100.  The differential is implausible
when even the smallest possible sum is above the high bound, or the largest possible
sum below the low bound (``differential_sum_low`` / ``_high`` in cbc-loinc-v1.toml);
then every usable percent of it is refused with a warning.  So the low bound only
bites when all five parts are sent, the high bound whenever the sent ones exceed it.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal

from leukofhir.model import Analyte, CbcValue, Measure
from leukofhir.terminology.tables import Terminology, field_key

__all__ = ["implausible_percents"]

_ZERO = Decimal(0)
_HUNDRED = Decimal(100)
_NEUTROPHILS = field_key(Analyte.NEUTROPHILS, Measure.PERCENT)
_SEGMENTED = field_key(Analyte.SEGMENTED_NEUTROPHILS, Measure.PERCENT)
_BANDS = field_key(Analyte.BAND_NEUTROPHILS, Measure.PERCENT)
_PARTS = tuple(
    field_key(analyte, Measure.PERCENT)
    for analyte in (Analyte.LYMPHOCYTES, Analyte.MONOCYTES, Analyte.EOSINOPHILS, Analyte.BASOPHILS)
)


def _interval(value: CbcValue | None) -> tuple[Decimal, Decimal] | None:
    if value is None or value.number is None or value.problem:
        return None
    number, comparator = value.number, value.comparator
    if comparator.startswith("<"):
        return _ZERO, number
    if comparator.startswith(">"):
        return number, _HUNDRED
    return number, number


def implausible_percents(
    values: Mapping[str, CbcValue], terminology: Terminology
) -> tuple[list[str], str]:
    """The keys of the percents to refuse and why (``[], ""`` when plausible)."""
    used: list[str] = []
    low = high = _ZERO

    def add(key: str) -> tuple[Decimal, Decimal] | None:
        interval = _interval(values.get(key))
        if interval is not None:
            used.append(key)
        return interval

    neutrophils = add(_NEUTROPHILS)
    if neutrophils is None:
        segs = add(_SEGMENTED)
        bands = add(_BANDS)
        if segs is not None or bands is not None:
            segs, bands = segs or (_ZERO, _HUNDRED), bands or (_ZERO, _HUNDRED)
            neutrophils = (segs[0] + bands[0], min(_HUNDRED, segs[1] + bands[1]))
    parts = [neutrophils, *(add(key) for key in _PARTS)]
    if len(used) < 2:
        return [], ""
    for part in parts:
        part_low, part_high = part or (_ZERO, _HUNDRED)
        low += part_low
        high += part_high
    sum_low, sum_high = terminology.differential_sum
    if low > sum_high:
        total = f"{low} %" if low == high else f"at least {low} %"
    elif high < sum_low:
        total = f"at most {high} %"
    else:
        return [], ""
    return used, (
        f"the differential percents sum to {total}, outside {sum_low}–{sum_high} %; value not used"
    )

"""Absolute counts leukofhir computes when the lab sent only a percent (RULES.md §1).

``count = WBC × percent / 100``, for each analyte with a ``derive`` code in
cbc-loinc-v1.toml, when that analyte's count line is absent (a count line that was
sent but is unusable is not replaced: its problem is reported instead).  The percent
must be exact; a WBC sent as an open bound (``<0.5``) gives a count with the same bound.

Absolute neutrophils (ANC), when no neutrophil line at all was sent (neither count
nor percent): segmented + band neutrophils, each the count sent or WBC × its percent;
both parts are needed.

The arithmetic is exact in Decimal and nothing is rounded: the result carries the
digits of its inputs (WBC 3.0 × 50 % → 1.500; 2.55 × 58.7 % → 1.49685), so a band edge
is decided on the exact product.  It runs in :data:`leukofhir.limits.EXACT`, whose
precision holds any product and sum of numbers within the input bounds (the default
context's 28 digits would round an 18-digit WBC times an 18-digit percent).  The
derived value has no observation, the LOINC code of the analyte's automated count, and
``derived_from`` the values it came from (the emitted Observation's ``derivedFrom``).
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal

from leukofhir.limits import EXACT
from leukofhir.model import Analyte, CbcValue, Measure
from leukofhir.terminology.tables import Terminology, field_key

__all__ = ["COUNT_UNIT", "derive_counts"]

COUNT_UNIT = "10*9/L"
_WBC = field_key(Analyte.WBC, Measure.COUNT)
_ANC = field_key(Analyte.NEUTROPHILS, Measure.COUNT)
_NEUTROPHIL_PERCENT = field_key(Analyte.NEUTROPHILS, Measure.PERCENT)


def _exact(value: CbcValue | None) -> CbcValue | None:
    if value is None or value.number is None or value.problem or value.comparator:
        return None
    return value


def _usable(value: CbcValue | None) -> CbcValue | None:
    if value is None or value.number is None or value.problem:
        return None
    return value


def _from_percent(
    wbc: CbcValue | None, percent: CbcValue | None, loinc: str = ""
) -> CbcValue | None:
    """A count from WBC and a percent, under the LOINC code ``loinc``.

    The percent must be exact; the WBC may be an open bound, which the product keeps
    (WBC '<0.5' × 50 % is ANC '<0.25': multiplying by a positive number keeps the
    inequality; by 0 % it gives an exact 0)."""
    percent = _exact(percent)
    if wbc is None or wbc.number is None or percent is None or percent.number is None:
        return None
    number = EXACT.multiply(wbc.number, percent.number).scaleb(-2, EXACT)
    comparator = wbc.comparator if percent.number > 0 else ""
    return CbcValue(
        percent.analyte,
        Measure.COUNT,
        loinc,
        None,
        number,
        comparator,
        COUNT_UNIT,
        (wbc, percent),
    )


def derive_counts(values: Mapping[str, CbcValue], terminology: Terminology) -> list[CbcValue]:
    """The counts to add to ``values`` (one chosen value per field, by :func:`field_key`)."""
    wbc = _usable(values.get(_WBC))
    derived: list[CbcValue] = []
    anc_loinc = ""
    for derivation in terminology.derivations:
        if derivation.analyte is Analyte.NEUTROPHILS:
            anc_loinc = derivation.loinc
        if derivation.count_key in values:
            continue
        count = _from_percent(wbc, values.get(derivation.percent_key), derivation.loinc)
        if count is not None:
            derived.append(count)
    if _ANC in values or _NEUTROPHIL_PERCENT in values or not anc_loinc:
        return derived
    anc = _anc_from_parts(values, wbc, terminology, anc_loinc)
    if anc is not None:
        derived.append(anc)
    return derived


def _anc_from_parts(
    values: Mapping[str, CbcValue], wbc: CbcValue | None, terminology: Terminology, loinc: str
) -> CbcValue | None:
    parts: list[CbcValue] = []
    total = Decimal(0)
    for part in terminology.anc_parts:
        if part.count_key in values:
            count = _exact(values[part.count_key])
        else:
            count = _from_percent(wbc, values.get(part.percent_key))
        if count is None or count.number is None or count.comparator:
            return None  # a sum of bounds is kept out: only exact parts add up
        parts.append(count)
        total = EXACT.add(total, count.number)
    if not parts:
        return None
    sources: list[CbcValue] = []
    for part_value in parts:
        for source in part_value.derived_from if part_value.derived else (part_value,):
            if all(source is not seen for seen in sources):
                sources.append(source)
    return CbcValue(
        Analyte.NEUTROPHILS, Measure.COUNT, loinc, None, total, "", COUNT_UNIT, tuple(sources)
    )

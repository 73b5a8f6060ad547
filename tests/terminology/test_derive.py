"""Counts derived exactly from WBC × percent / 100, and ANC from segmented + band."""

from __future__ import annotations

from decimal import Decimal

import pytest

from leukofhir.model import Analyte, Cbc, CbcValue, LabObservation, Measure
from tests.terminology.builders import (
    ABC,
    AEC,
    ALC,
    AMC,
    ANC,
    BAND,
    BAND_PCT,
    BASO_PCT,
    EOS_PCT,
    LYMPH_PCT,
    MONO_PCT,
    NEUT_PCT,
    SEG,
    SEG_PCT,
    cbc_of,
    count,
    line,
    percent,
    wbc,
)


def anc(cbc: Cbc) -> CbcValue | None:
    return cbc.get(Analyte.NEUTROPHILS, Measure.COUNT)


@pytest.mark.parametrize(
    ("code", "analyte", "target"),
    [
        (NEUT_PCT, Analyte.NEUTROPHILS, ANC),
        (LYMPH_PCT, Analyte.LYMPHOCYTES, ALC),
        (MONO_PCT, Analyte.MONOCYTES, AMC),
        (EOS_PCT, Analyte.EOSINOPHILS, AEC),
        (BASO_PCT, Analyte.BASOPHILS, ABC),
    ],
)
def test_count_from_wbc_and_percent(code: str, analyte: Analyte, target: str) -> None:
    cbc = cbc_of(wbc("2.55"), percent(code, "58.7"))
    derived = cbc.get(analyte, Measure.COUNT)
    assert derived is not None
    assert derived.derived
    assert derived.usable
    assert derived.observation is None
    assert derived.loinc == target
    assert derived.unit == "10*9/L"
    assert derived.number == Decimal("1.49685")  # exact: 2.55 × 58.7 / 100, no rounding
    wbc_value, pct_value = derived.derived_from
    assert wbc_value is cbc.get(Analyte.WBC, Measure.COUNT)
    assert pct_value is cbc.get(analyte, Measure.PERCENT)
    assert not cbc.issues


def test_derived_value_carries_the_inputs_digits() -> None:
    value = anc(cbc_of(wbc("3.0"), percent(NEUT_PCT, "50")))
    assert value is not None
    assert str(value.number) == "1.500"
    value = anc(cbc_of(wbc("3000", unit="/uL"), percent(NEUT_PCT, "50")))
    assert value is not None
    assert value.number == Decimal("1.5")


def test_sent_count_is_not_replaced() -> None:
    cbc = cbc_of(wbc("3.0"), percent(NEUT_PCT, "50"), count(ANC, "1.4"))
    value = anc(cbc)
    assert value is not None
    assert not value.derived
    assert value.number == Decimal("1.4")


def test_an_open_bound_wbc_gives_a_bounded_count() -> None:
    """WBC '<0.5' with 50 % neutrophils: ANC '<0.25' (enough to decide grade 4, critical)."""
    value = anc(cbc_of(wbc("<0.5"), percent(NEUT_PCT, "50")))
    assert value is not None
    assert value.derived
    assert (value.comparator, value.number) == ("<", Decimal("0.250"))


def test_zero_percent_of_a_bounded_wbc_is_exactly_zero() -> None:
    value = anc(cbc_of(wbc("<0.5"), percent(NEUT_PCT, "0")))
    assert value is not None
    assert (value.comparator, value.number) == ("", Decimal("0.0"))


def test_unusable_sent_count_is_not_replaced_by_a_derived_one() -> None:
    cbc = cbc_of(wbc("3.0"), percent(NEUT_PCT, "50"), line(ANC, "1.4", "xyz"))
    value = anc(cbc)
    assert value is not None
    assert not value.derived
    assert not value.usable


@pytest.mark.parametrize(
    "lines",
    [
        (wbc("3.0"), percent(NEUT_PCT, "<50")),  # percent an open bound
        (wbc("3.0", unit="xyz"), percent(NEUT_PCT, "50")),  # WBC unusable
        (wbc("3.0"), line(NEUT_PCT, "50", "10*3/uL")),  # percent unusable
        (wbc("3.0", status="X"), percent(NEUT_PCT, "50")),  # WBC cancelled
        (percent(NEUT_PCT, "50"),),  # no WBC
    ],
)
def test_not_derived(lines: tuple[LabObservation, ...]) -> None:
    assert anc(cbc_of(*lines)) is None


def test_anc_from_segmented_and_band_counts() -> None:
    cbc = cbc_of(wbc("3.0"), count(SEG, "1.10"), count(BAND, "0.25"))
    value = anc(cbc)
    assert value is not None
    assert value.derived
    assert value.number == Decimal("1.35")
    assert value.loinc == ANC
    seg = cbc.get(Analyte.SEGMENTED_NEUTROPHILS, Measure.COUNT)
    band = cbc.get(Analyte.BAND_NEUTROPHILS, Measure.COUNT)
    assert value.derived_from == (seg, band)


def test_anc_from_segmented_and_band_percents() -> None:
    cbc = cbc_of(wbc("4.0"), percent(SEG_PCT, "30"), percent(BAND_PCT, "5"))
    value = anc(cbc)
    assert value is not None
    assert value.number == Decimal("1.4000")
    w = cbc.get(Analyte.WBC, Measure.COUNT)
    s = cbc.get(Analyte.SEGMENTED_NEUTROPHILS, Measure.PERCENT)
    b = cbc.get(Analyte.BAND_NEUTROPHILS, Measure.PERCENT)
    assert value.derived_from == (w, s, b)  # WBC once


def test_anc_from_segmented_count_and_band_percent() -> None:
    cbc = cbc_of(wbc("4.0"), count(SEG, "1.2"), percent(BAND_PCT, "5"))
    value = anc(cbc)
    assert value is not None
    assert value.number == Decimal("1.4000")
    assert len(value.derived_from) == 3


@pytest.mark.parametrize(
    "lines",
    [
        (wbc("3.0"), count(SEG, "1.1")),  # bands missing
        (wbc("3.0"), count(BAND, "0.2")),  # segments missing
        (wbc("3.0"), count(SEG, "<1.1"), count(BAND, "0.2")),  # an open bound
        (wbc("3.0"), count(SEG, "1.1"), line(BAND, "0.2", "xyz")),  # unusable
        (count(SEG, "1.1"), percent(BAND_PCT, "5")),  # no WBC for the band percent
    ],
)
def test_anc_not_derived_from_parts(lines: tuple[LabObservation, ...]) -> None:
    assert anc(cbc_of(*lines)) is None


def test_neutrophil_percent_path_comes_first() -> None:
    cbc = cbc_of(wbc("3.0"), percent(NEUT_PCT, "40"), count(SEG, "5"), count(BAND, "5"))
    value = anc(cbc)
    assert value is not None
    assert value.number == Decimal("1.200")


def test_a_sent_neutrophil_percent_blocks_the_parts_path() -> None:
    # neutrophils % sent but unusable: no fallback to segmented + band
    cbc = cbc_of(wbc("3.0"), line(NEUT_PCT, "40", "xyz"), count(SEG, "1"), count(BAND, "0.2"))
    assert anc(cbc) is None


def test_derived_values_follow_the_sent_ones() -> None:
    cbc = cbc_of(wbc("3.0"), percent(LYMPH_PCT, "30"), percent(NEUT_PCT, "60"))
    assert [v.derived for v in cbc.values] == [False, False, False, True, True]
    assert [v.analyte for v in cbc.values[3:]] == [Analyte.NEUTROPHILS, Analyte.LYMPHOCYTES]


def test_a_product_of_precise_inputs_is_not_rounded_across_a_band_edge() -> None:
    # 18 significant digits each (the input bound): the exact product has 36 digits and
    # lies below the neutropenia edge of 1.5; Decimal's default 28-digit context rounds
    # it to 1.5, which would decide "no neutropenia".
    cbc = cbc_of(wbc("2.99999999999999997"), percent(NEUT_PCT, "50.0000000000000005"))
    derived = anc(cbc)
    assert derived is not None
    assert derived.number == Decimal("1.49999999999999999999999999999999985")
    assert derived.number < Decimal("1.5")

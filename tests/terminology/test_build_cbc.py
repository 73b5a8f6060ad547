"""LabReport → Cbc: identification, status, values, physical range, choice, bookkeeping."""

from __future__ import annotations

from decimal import Decimal

import pytest

from leukofhir.errors import ErrorCode, Location, Severity
from leukofhir.model import LOINC, Analyte, Cbc, Coding, LabObservation, LabReport, Measure, Value
from leukofhir.terminology import build_cbc
from tests.terminology.builders import (
    ANC,
    BASO_PCT,
    EOS_PCT,
    HGB,
    LYMPH_PCT,
    MONO_PCT,
    NEUT_PCT,
    PLT,
    TERMINOLOGY,
    WBC,
    WBC_NRBC,
    cbc_of,
    count,
    line,
    percent,
    report,
    wbc,
)


def accounted_once(cbc: Cbc) -> None:
    """Every observation is in exactly one of values, superseded, unmapped."""
    used = [v.observation for v in (*cbc.values, *cbc.superseded) if v.observation is not None]
    seen = [*used, *cbc.unmapped]
    assert sorted(str(o.location) for o in seen) == sorted(
        str(o.location) for o in cbc.report.observations
    )


# --- identification ----------------------------------------------------------------------


def test_loinc_primary_coding() -> None:
    cbc = cbc_of(wbc("3.2"), line("2345-7", "95", "mg/dL"))
    (value,) = cbc.values
    assert (value.analyte, value.measure, value.loinc) == (Analyte.WBC, Measure.COUNT, WBC)
    assert [str(o.location) for o in cbc.unmapped] == ["OBX[2]"]
    assert not cbc.issues
    accounted_once(cbc)


def test_loinc_in_the_alternate_coding() -> None:
    # a local code in CWE-1..3, the LOINC in CWE-4..6 (trusted-intermediary Epic style)
    codes = (Coding("WBCX", "", "White count", "L"), Coding("6690-2", LOINC, "", "LN"))
    cbc = cbc_of(line("", "3.2", "K/uL", codes=codes))
    assert cbc.values[0].loinc == "6690-2"


def test_ln_source_system_without_uri() -> None:
    cbc = cbc_of(line("", "3.2", "K/uL", codes=(Coding("6690-2", "", "", "LN"),)))
    assert cbc.values[0].analyte is Analyte.WBC


def test_local_code_without_mapping_is_unmapped() -> None:
    cbc = cbc_of(line("", "3.2", "K/uL", codes=(Coding("6690-2", "", "", "L"),)))
    assert not cbc.values
    assert len(cbc.unmapped) == 1


@pytest.mark.parametrize(
    "code",
    [
        "58410-2", "57021-8", "57022-6", "57023-4", "57782-5", "24318-8", "24317-0",
        "69742-5", "69738-3", "74398-9", "71676-1",
    ],
)  # fmt: skip
def test_never_codes_never_map(code: str) -> None:
    cbc = cbc_of(line(code, "7.9", "10*9/L"))
    assert not cbc.values
    assert not cbc.superseded
    assert len(cbc.unmapped) == 1
    (issue,) = cbc.issues
    assert issue.severity is Severity.INFORMATION
    assert issue.location == Location("OBX", 1, 3)
    assert code in issue.message
    assert "not a CBC field" in issue.message


def test_a_never_code_anywhere_on_the_line_wins() -> None:
    # a CBC code beside a panel code on the same line: not mapped (the panel code says
    # the line is mis-coded), whatever the order
    for codes in (
        (Coding("751-8", LOINC), Coding("74398-9", LOINC)),
        (Coding("74398-9", LOINC), Coding("751-8", LOINC)),
    ):
        cbc = cbc_of(line("", "7.9", "10*9/L", codes=codes))
        assert not cbc.values
        assert len(cbc.unmapped) == 1


def test_morphology_and_invalid_codes_are_unmapped() -> None:
    cbc = cbc_of(line("11156-7", "8.2", "giga.l-1"), line("xx625-4", "1", "x"))
    assert not cbc.values
    assert len(cbc.unmapped) == 2
    assert not cbc.issues


def test_code_text_is_never_used() -> None:
    obs = line("99999-9", "3.2", "K/uL")._replace(code_text="WBC Leukocytes")
    assert not cbc_of(obs).values


# --- status ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "status", ["F", "C", "A", "P", "U", "", "f", "final", "amended", "corrected", "preliminary"]
)
def test_statuses_used(status: str) -> None:
    assert cbc_of(wbc("3.2", status=status)).values[0].usable


@pytest.mark.parametrize(
    ("status", "meaning"),
    [
        ("X", "cancelled"),
        ("W", "entered in error"),
        ("D", "deleted"),
        ("cancelled", "cancelled"),
        ("entered-in-error", "entered in error"),
        ("I", "result pending"),
        ("R", "entered, not verified"),
        ("registered", "registered, no result yet"),
    ],
)
def test_statuses_refused(status: str, meaning: str) -> None:
    cbc = cbc_of(wbc("3.2", status=status))
    (value,) = cbc.values
    assert not value.usable
    assert value.number is None
    assert value.problem == f"status {status} ({meaning}): not used"
    (issue,) = cbc.issues
    assert issue.severity is Severity.WARNING
    assert issue.location == Location("OBX", 1, 11)


def test_unknown_status() -> None:
    cbc = cbc_of(wbc("3.2", status="Q"))
    assert cbc.values[0].problem == "status Q (not a known result status): not used"
    assert cbc.issues[0].code is ErrorCode.TABLE_VALUE_NOT_FOUND


def test_cancelled_line_without_value_says_cancelled() -> None:
    cbc = cbc_of(line(WBC, None, None, status="X"))
    assert cbc.values[0].problem == "status X (cancelled): not used"


# --- values ------------------------------------------------------------------------------


def test_missing_value() -> None:
    for obs in (line(WBC, None, "K/uL"), line(WBC, "", "K/uL")):
        cbc = cbc_of(obs)
        assert cbc.values[0].problem == "no value sent"
        assert cbc.issues[0].location == Location("OBX", 1, 5)
        assert cbc.issues[0].code is ErrorCode.REQUIRED_FIELD_MISSING
        assert "value not used" in cbc.issues[0].message


@pytest.mark.parametrize("text", ["NOVALUE", "see note", "5,2", "NaN", "Infinity"])
def test_non_numeric_value(text: str) -> None:
    cbc = cbc_of(wbc(text))
    assert cbc.values[0].problem == f"value {text!r} is not a number"
    assert cbc.issues[0].location == Location("OBX", 1, 5)
    assert cbc.issues[0].code is ErrorCode.DATA_TYPE


def test_leading_zero_kept_exact() -> None:
    assert str(cbc_of(wbc("05.100")).values[0].number) == "5.100"


@pytest.mark.parametrize("comparator", ["<", "<=", ">", ">="])
def test_comparator_is_kept(comparator: str) -> None:
    (value,) = cbc_of(wbc(f"{comparator}0.5")).values
    assert value.usable
    assert (value.comparator, value.number) == (comparator, Decimal("0.5"))


def test_comparator_kept_through_unit_conversion() -> None:
    (value,) = cbc_of(wbc("<500", "/uL")).values
    assert (value.comparator, value.number) == ("<", Decimal("0.5"))


@pytest.mark.parametrize("comparator", ["=", "<>", "~"])
def test_unusable_comparator(comparator: str) -> None:
    obs = wbc("0.5")._replace(value=Value(f"{comparator}0.5", Decimal("0.5"), comparator))
    assert not cbc_of(obs).values[0].usable


# --- physical range ----------------------------------------------------------------------


def test_negative_value_refused() -> None:
    cbc = cbc_of(wbc("-1.0"))
    assert cbc.values[0].problem == "value '-1.0' is negative; value not used"
    assert cbc.issues[0].location == Location("OBX", 1, 5)


def test_wbc_physical_limit() -> None:
    assert cbc_of(wbc("1000")).values[0].usable
    too_high = cbc_of(wbc("1000.1")).values[0]
    assert not too_high.usable
    assert "above the physical limit of 1000 10*9/L" in too_high.problem
    assert not cbc_of(wbc("1000001", "/uL")).values[0].usable  # 1000.001 after conversion
    assert not cbc_of(count(ANC, "1200")).values[0].usable


@pytest.mark.parametrize(
    ("code", "text", "unit"),
    [(HGB, "1E+30", "mmol/L"), (HGB, "9E+999999", "g/L"), (WBC, "9E+999999", "/uL")],
)
def test_absurd_exponents_are_refused(code: str, text: str, unit: str) -> None:
    (value,) = cbc_of(line(code, text, unit)).values
    assert not value.usable
    assert value.number is None


def test_hemoglobin_and_platelet_physical_limits() -> None:
    assert cbc_of(line(HGB, "40", "g/dL")).values[0].usable
    assert not cbc_of(line(HGB, "40.1", "g/dL")).values[0].usable
    assert not cbc_of(line(HGB, "25", "mmol/L")).values[0].usable  # 40.29 g/dL
    assert cbc_of(line(PLT, "10000", "10*3/uL")).values[0].usable
    assert not cbc_of(line(PLT, "10000001", "/uL")).values[0].usable


def test_percent_above_100_refused() -> None:
    assert cbc_of(percent(NEUT_PCT, "100")).values[0].usable
    value = cbc_of(percent(NEUT_PCT, "100.5")).values[0]
    assert "above the physical limit of 100 %" in value.problem


# --- the differential as a whole ---------------------------------------------------------


def _differential(*pcts: str) -> list[LabObservation]:
    codes = (NEUT_PCT, LYMPH_PCT, MONO_PCT, EOS_PCT, BASO_PCT)
    return [percent(code, pct) for code, pct in zip(codes, pcts, strict=False)]


def test_differential_summing_to_100_is_used() -> None:
    cbc = cbc_of(wbc("5.0"), *_differential("60", "30", "6", "3", "1"))
    assert all(v.usable for v in cbc.values)
    assert not cbc.issues


def test_differential_far_above_100_is_refused() -> None:
    cbc = cbc_of(wbc("5.0"), *_differential("70", "40", "8", "4", "1"))
    percents = [v for v in cbc.values if v.measure is Measure.PERCENT]
    assert len(percents) == 5
    assert not any(v.usable for v in percents)
    assert percents[0].problem == (
        "the differential percents sum to 123 %, outside 90–110 %; value not used"
    )
    assert [str(i.location) for i in cbc.issues] == [f"OBX[{n}]-5" for n in range(2, 7)]
    # the WBC is not touched, and no count is derived from refused percents
    assert cbc.get(Analyte.WBC, Measure.COUNT).usable  # type: ignore[union-attr]
    assert cbc.get(Analyte.NEUTROPHILS, Measure.COUNT) is None


def test_differential_far_below_100_with_all_five() -> None:
    cbc = cbc_of(*_differential("40", "30", "6", "3", "1"))  # 80
    assert not any(v.usable for v in cbc.values)
    assert "sum to at most 80 %" in cbc.values[0].problem


def test_differential_edges_are_inside() -> None:
    assert all(v.usable for v in cbc_of(*_differential("50", "30", "6", "3", "1")).values)  # 90
    assert all(v.usable for v in cbc_of(*_differential("70", "30", "6", "3", "1")).values)  # 110
    assert not all(v.usable for v in cbc_of(*_differential("70.1", "30", "6", "3", "1")).values)


def test_partial_differential_low_sum_is_not_judged() -> None:
    # four of five sent: the missing one may hold the rest
    cbc = cbc_of(*_differential("40", "20", "6", "3"))
    assert all(v.usable for v in cbc.values)


def test_partial_differential_high_sum_is_judged() -> None:
    cbc = cbc_of(*_differential("80", "40"))
    assert not any(v.usable for v in cbc.values)


def test_differential_open_bounds_are_ranges() -> None:
    # "<1" basophils is 0..1: 60 + 30 + 6 + 3 + <1 can be 99..100
    assert all(v.usable for v in cbc_of(*_differential("60", "30", "6", "3", "<1")).values)
    # ">90" neutrophils + 30 lymphocytes is at least 120
    cbc = cbc_of(*_differential(">90", "30"))
    assert "at least 120 %" in cbc.values[0].problem


def test_segments_and_bands_stand_in_for_neutrophils_in_the_sum() -> None:
    lines = [
        percent("769-0", "50"),
        percent("764-1", "10"),
        *_differential("", "30", "6", "3", "1")[1:],
    ]
    assert all(v.usable for v in cbc_of(*lines).values)
    lines = [
        percent("769-0", "70"),
        percent("764-1", "20"),
        *_differential("", "30", "6", "3", "1")[1:],
    ]
    assert not any(v.usable for v in cbc_of(*lines).values)


# --- one value per field -----------------------------------------------------------------


def test_nrbc_corrected_wbc_preferred_whatever_the_order() -> None:
    for lines in (
        (wbc("3.2"), line(WBC_NRBC, "3.0", "K/uL")),
        (line(WBC_NRBC, "3.0", "K/uL"), wbc("3.2")),
    ):
        cbc = cbc_of(*lines)
        (value,) = cbc.values
        assert value.loinc == WBC_NRBC
        assert value.number == Decimal("3.0")
        (other,) = cbc.superseded
        assert other.loinc == WBC
        assert other.usable
        (issue,) = cbc.issues
        assert issue.severity is Severity.INFORMATION
        assert issue.location == other.observation.location.at(3)  # type: ignore[union-attr]
        assert "33256-9 is preferred over 6690-2" in issue.message
        accounted_once(cbc)


def test_unusable_preferred_code_gives_way() -> None:
    cbc = cbc_of(line(WBC_NRBC, "3.0", "xyz"), wbc("3.2"))
    assert cbc.values[0].loinc == WBC
    assert cbc.values[0].usable
    assert cbc.superseded[0].loinc == WBC_NRBC


def test_first_usable_in_message_order() -> None:
    cbc = cbc_of(
        wbc("3.2", unit="xyz"), line("804-5", "3.4", "K/uL"), line("26464-8", "3.6", "K/uL")
    )
    assert cbc.values[0].loinc == "804-5"
    assert [v.loinc for v in cbc.superseded] == [WBC, "26464-8"]
    assert len([i for i in cbc.issues if i.severity is Severity.INFORMATION]) == 2


def test_repeated_code_keeps_the_first() -> None:
    cbc = cbc_of(wbc("3.2"), wbc("9.9"))
    assert cbc.values[0].number == Decimal("3.2")
    assert cbc.superseded[0].number == Decimal("9.9")
    assert "the first usable line is used" in cbc.issues[0].message


def test_no_usable_line_keeps_the_first_with_its_problem() -> None:
    cbc = cbc_of(wbc("3.2", unit="xyz"), wbc("abc"))
    assert cbc.values[0].problem.startswith("unit 'xyz'")
    assert cbc.superseded[0].problem == "value 'abc' is not a number"


def test_count_and_percent_are_separate_fields() -> None:
    cbc = cbc_of(count(ANC, "3.2"), percent(NEUT_PCT, "55"))
    assert {(v.analyte, v.measure) for v in cbc.values} == {
        (Analyte.NEUTROPHILS, Measure.COUNT),
        (Analyte.NEUTROPHILS, Measure.PERCENT),
    }


# --- locations, purity -------------------------------------------------------------------


def test_fhir_locations_stay_fhirpath() -> None:
    obs = wbc("3.2", unit="xyz")._replace(location=Location(expression="Bundle.entry[2].resource"))
    cbc = build_cbc(LabReport(Location("OBR", 1), observations=(obs,)), TERMINOLOGY)
    assert cbc.issues[0].location == Location(expression="Bundle.entry[2].resource.value.code")


def test_pure_and_deterministic() -> None:
    lines = (wbc("3.2"), *_differential("60", "30", "6", "3", "1"), line("2345-7", "1", "x"))
    first = build_cbc(report(*lines), TERMINOLOGY)
    assert build_cbc(report(*lines), TERMINOLOGY) == first


def test_empty_report() -> None:
    cbc = build_cbc(LabReport(Location("OBR", 1)), TERMINOLOGY)
    assert cbc == Cbc(cbc.report)

"""Every accepted unit spelling, and the units that must be refused (never guessed)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from leukofhir.errors import ErrorCode, Location, Severity
from leukofhir.model import Analyte, Measure
from leukofhir.terminology import build_cbc, load_terminology
from tests.terminology.builders import HGB, NEUT_PCT, PLT, WBC, line, report

TERMINOLOGY = load_terminology()

PER_NANOLITRE = [
    "10*3/uL", "10^3/uL", "x10E3/uL", "K/uL", "K/µL", "THOU/uL", "10*3/mm3",
    "10*9/L", "10^9/L", "x10^9/L", "G/L",
]  # fmt: skip
PER_MICROLITRE = ["/uL", "/mm3", "cells/uL", "cells/mm3", "/cmm", "/cumm", "{cells}/uL"]


def _only(code: str, text: str, unit: str | None, unit_display: str = "") -> tuple:  # type: ignore[type-arg]
    cbc = build_cbc(report(line(code, text, unit, unit_display=unit_display)), TERMINOLOGY)
    assert len(cbc.values) == 1
    return cbc.values[0], cbc.issues


def _variants(spelling: str) -> list[str]:
    return sorted({spelling, spelling.upper(), spelling.lower(), f" {spelling} "})


@pytest.mark.parametrize("spelling", [v for s in PER_NANOLITRE for v in _variants(s)])
def test_count_units_factor_one(spelling: str) -> None:
    value, issues = _only(WBC, "5.100", spelling)
    assert value.usable
    assert not issues
    assert value.number == Decimal("5.100")
    assert str(value.number) == "5.100"  # kept exactly as sent
    assert value.unit == "10*9/L"


@pytest.mark.parametrize("spelling", [v for s in PER_MICROLITRE for v in _variants(s)])
def test_count_units_per_microlitre(spelling: str) -> None:
    value, issues = _only(WBC, "4300", spelling)
    assert value.usable
    assert not issues
    assert value.number == Decimal("4.3")
    assert value.unit == "10*9/L"


@pytest.mark.parametrize("spelling", ["K/µL", "K/μL", "k/ul", "10^3/µL", "/µL", "cells/µL"])
def test_micro_sign_and_greek_mu_read_as_u(spelling: str) -> None:
    value, _ = _only(WBC, "3", spelling)
    assert value.usable


def test_platelets_are_counts() -> None:
    value, _ = _only(PLT, "150000", "{cells}/uL")
    assert (value.analyte, value.measure, value.number) == (
        Analyte.PLATELETS,
        Measure.COUNT,
        Decimal("150"),
    )


@pytest.mark.parametrize("spelling", ["%", " % "])
def test_percent_only_for_percent_codes(spelling: str) -> None:
    value, _ = _only(NEUT_PCT, "55", spelling)
    assert value.usable
    assert value.unit == "%"
    assert value.number == Decimal(55)
    count, issues = _only(WBC, "55", spelling)
    assert not count.usable
    assert (
        count.problem == f"unit {spelling!r} is not a known unit for WBC (6690-2); value not used"
    )
    assert issues[0].location == Location("OBX", 1, 6)


@pytest.mark.parametrize("spelling", ["10*3/uL", "/uL", "G/L"])
def test_count_units_refused_for_percent_codes(spelling: str) -> None:
    value, _ = _only(NEUT_PCT, "55", spelling)
    assert not value.usable
    assert "is not a known unit for neutrophils % (770-8)" in value.problem


@pytest.mark.parametrize(
    ("text", "unit", "expected"),
    [
        ("12.5", "g/dL", "12.5"),
        ("12.5", "G/DL", "12.5"),
        ("125", "g/L", "12.5"),
        ("125", "G/L", "12.5"),  # for hemoglobin G/L is gram per litre, never giga
        ("7.5", "mmol/L", "12.09"),  # 7.5 × 1.61145 = 12.085875 → 12.09
        ("8.0", "MMOL/L", "12.89"),  # 12.8916
        ("7.447", "mmol/L", "12.00"),  # 12.0004...: rounding to 0.01 g/dL
    ],
)
def test_hemoglobin_units(text: str, unit: str, expected: str) -> None:
    value, _ = _only(HGB, text, unit)
    assert value.usable
    assert value.measure is Measure.MASS_CONCENTRATION
    assert value.unit == "g/dL"
    assert value.number == Decimal(expected)


@pytest.mark.parametrize(
    "unit", ["giga.l-1", "10*6/uL", "mg/dL", "xyz", "cells", "10E3", "Thousands"]
)
def test_unknown_unit_is_refused_not_guessed(unit: str) -> None:
    value, issues = _only(WBC, "3.2", unit)
    assert not value.usable
    assert value.number is None
    assert value.problem == f"unit {unit!r} is not a known unit for WBC (6690-2); value not used"
    (issue,) = issues
    assert issue.severity is Severity.WARNING
    assert issue.code is ErrorCode.TABLE_VALUE_NOT_FOUND
    assert issue.location == Location("OBX", 1, 6)


def test_missing_unit_is_refused() -> None:
    for unit in (None, "", "  "):
        value, issues = _only(WBC, "3.2", unit)
        assert not value.usable
        assert value.problem == "no unit sent for WBC (6690-2); value not used"
        assert issues[0].location == Location("OBX", 1, 6)


def test_hemoglobin_units_refused_on_counts() -> None:
    value, _ = _only(WBC, "3.2", "g/dL")
    assert not value.usable


def test_unit_display_is_tried_after_the_code() -> None:
    # FHIR: {"unit": "billion per liter", "code": "10*9/L"} - the code decides
    value, _ = _only(WBC, "5.2", "10*9/L", unit_display="billion per liter")
    assert value.usable
    # the code unknown, the display known: the display is used
    value, _ = _only(WBC, "5.2", "10*9/l-x", unit_display="K/uL")
    assert value.usable
    # only a display (US Core neutrophils example: unit "%" with no code)
    value, _ = _only(NEUT_PCT, "40.0", None, unit_display="%")
    assert value.usable
    # neither known
    value, _ = _only(WBC, "5.2", None, unit_display="Thousands Per MicroLiter")
    assert value.problem == (
        "unit 'Thousands Per MicroLiter' is not a known unit for WBC (6690-2); value not used"
    )


def test_terminology_unit_for() -> None:
    from leukofhir.model import Coding

    unit = TERMINOLOGY.unit_for(Measure.COUNT, Coding("K/µL"))
    assert unit is not None
    assert unit.factor == 1
    assert TERMINOLOGY.unit_for(Measure.PERCENT, Coding("K/µL")) is None
    assert TERMINOLOGY.unit_for(Measure.COUNT, None) is None

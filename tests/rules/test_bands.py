"""Every threshold and CTCAE band edge: half-open bands, exact Decimal comparison."""

from __future__ import annotations

import pytest

from tests.rules.helpers import evaluate_lines, finding
from tests.terminology.builders import ABC, AEC, ALC, AMC, ANC, count, wbc


@pytest.mark.parametrize(
    ("value", "grade", "priority", "critical"),
    [
        ("4.3", None, "", False),  # the lower limit itself is not leukopenia
        ("4.29", 1, "PL", False),
        ("3.0", 1, "PL", False),  # 3.0 is grade 1 (G2 is < 3.0)
        ("2.99", 2, "PM", False),
        ("2.0", 2, "PM", False),  # 2.0 is grade 2, not critical (critical is < 2.0)
        ("1.99", 3, "PH", True),
        ("1.0", 3, "PH", True),
        ("0.99", 4, "PH", True),
        ("0", 4, "PH", True),
    ],
)
def test_leukopenia_bands(value: str, grade: int | None, priority: str, critical: bool) -> None:
    found = finding(evaluate_lines(wbc(value)), "leukopenia")
    if grade is None:
        assert found is None
        return
    assert found is not None
    assert (found.grade, found.priority, found.critical) == (grade, priority, critical)
    text = f"Leukopenia, CTCAE grade {grade}" + (", critical value" if critical else "")
    assert found.text == text


@pytest.mark.parametrize("unit_value", [("4300", "/uL"), ("4.3", "K/uL"), ("4300", "cells/mm3")])
def test_leukopenia_edge_in_any_unit(unit_value: tuple[str, str]) -> None:
    value, unit = unit_value
    assert finding(evaluate_lines(wbc(value, unit=unit)), "leukopenia") is None
    lower = str(int(value) - 10) if unit != "K/uL" else "4.29"
    assert finding(evaluate_lines(wbc(lower, unit=unit)), "leukopenia") is not None


@pytest.mark.parametrize(
    ("value", "grade", "band", "critical", "agranulocytosis"),
    [
        ("1.5", None, "", False, False),  # ANC < 1.5 only
        ("1.49", 2, "mild", False, False),  # CTCAE grade 1 is not applicable (LLN 1.5)
        ("1.0", 2, "mild", False, False),
        ("0.99", 3, "moderate", False, False),
        ("0.5", 3, "moderate", False, False),
        ("0.49", 4, "severe", True, False),
        ("0.2", 4, "severe", True, False),  # agranulocytosis is < 0.2
        ("0.19", 4, "severe", True, True),
        ("0", 4, "severe", True, True),
    ],
)
def test_neutropenia_bands(
    value: str, grade: int | None, band: str, critical: bool, agranulocytosis: bool
) -> None:
    evaluation = evaluate_lines(wbc("5.0"), count(ANC, value))
    found = finding(evaluation, "neutropenia")
    if grade is None:
        assert found is None
    else:
        assert found is not None
        assert (found.grade, found.band, found.critical) == (grade, band, critical)
        assert found.priority == ("PH" if grade >= 3 else "PM")
        suffix = ", critical value" if critical else ""
        assert found.text == f"Neutropenia, CTCAE grade {grade} ({band}){suffix}"
    agran = finding(evaluation, "agranulocytosis")
    assert (agran is not None) is agranulocytosis
    if agran is not None:
        assert agran.grade is None
        assert agran.priority == "PH"
        assert agran.critical
        assert agran.text == "Agranulocytosis, critical value"


@pytest.mark.parametrize(
    ("value", "grade"),
    [("1.0", None), ("0.99", 1), ("0.8", 1), ("0.79", 2), ("0.5", 2), ("0.49", 3), ("0.2", 3),
     ("0.19", 4)],
)  # fmt: skip
def test_lymphopenia_bands(value: str, grade: int | None) -> None:
    found = finding(evaluate_lines(wbc("5.0"), count(ALC, value)), "lymphopenia")
    assert (found.grade if found else None) == grade
    if found is not None:
        assert found.priority == {1: "PL", 2: "PM", 3: "PH", 4: "PH"}[grade]  # type: ignore[index]
        assert not found.critical
        assert found.code.code == "lymphopenia"


@pytest.mark.parametrize(
    ("rule_id", "code", "edge", "beyond"),
    [
        ("monocytopenia", AMC, "0.2", "0.19"),
        ("eosinophilia", AEC, "0.5", "0.51"),
        ("basophilia", ABC, "0.2", "0.21"),
    ],
)
def test_ungraded_edges(rule_id: str, code: str, edge: str, beyond: str) -> None:
    assert finding(evaluate_lines(wbc("5.0"), count(code, edge)), rule_id) is None
    found = finding(evaluate_lines(wbc("5.0"), count(code, beyond)), rule_id)
    assert found is not None
    assert (found.grade, found.band, found.priority, found.critical) == (None, "", "PL", False)


def test_leukocytosis_edge() -> None:
    assert finding(evaluate_lines(wbc("10.8")), "leukocytosis") is None
    found = finding(evaluate_lines(wbc("10.81")), "leukocytosis")
    assert found is not None
    assert found.priority == "PL"
    assert found.code.code == "111583006"
    assert finding(evaluate_lines(wbc("10800", unit="/uL")), "leukocytosis") is None
    assert finding(evaluate_lines(wbc("10810", unit="/uL")), "leukocytosis") is not None


def test_normal_cbc_has_no_finding() -> None:
    evaluation = evaluate_lines(
        wbc("7.0"), count(ANC, "4.0"), count(ALC, "2.0"), count(AMC, "0.5"), count(AEC, "0.2"),
        count(ABC, "0.05"),
    )  # fmt: skip
    assert evaluation.findings == ()

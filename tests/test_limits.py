"""The input bounds: a number is judged on its digits and exponent, never written out."""

from __future__ import annotations

import time
from decimal import Decimal

import pytest

from leukofhir.limits import MAX_DIGITS, number_problem, sent_number, sent_text


@pytest.mark.parametrize(
    "text",
    ["5.100", "0", "-0", "212", "0.000000000000000001", "999999999999999999", "1E+17", "1.5E-3"],
)
def test_numbers_a_lab_can_send_are_within_bounds(text: str) -> None:
    assert number_problem(Decimal(text)) == ""


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("1E+999999999", "about 1E+999999999"),
        ("1E+18", "about 1E+18"),
        ("0E+999999999", "about 1E+999999999"),
        ("1E-99999999", "1E-99999999 is finer"),
        ("0.0000000000000000001", "1E-19 is finer"),
        ("1" * 19, "19 significant digits"),
        ("3" * 5000, "5,000 significant digits"),
        ("NaN", "not a finite number"),
    ],
)
def test_numbers_beyond_the_bounds_are_named_without_being_written(text: str, words: str) -> None:
    start = time.perf_counter()
    problem = number_problem(Decimal(text))
    assert time.perf_counter() - start < 0.1  # a gigabyte of zeros would take seconds
    assert words in problem
    assert len(problem) < 200


def test_a_number_beyond_the_bounds_travels_as_its_text_only() -> None:
    value = sent_number("<1E+999999999", Decimal("1E+999999999"), "<")
    assert (value.text, value.number, value.comparator) == ("<1E+999999999", None, "<")
    assert "physical range" in value.problem
    assert sent_number("2.5", Decimal("2.5")).number == Decimal("2.5")
    assert MAX_DIGITS == 18


def test_a_number_text_no_decimal_holds_is_text_only() -> None:
    value = sent_text(">1e-99999999999999999999", "1e-99999999999999999999", ">")
    assert (value.number, value.comparator) == (None, ">")
    assert "19 digits" in value.problem
    assert sent_text("4.2", "4.2").number == Decimal("4.2")

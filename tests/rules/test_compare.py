"""Three-valued comparisons of exact values and open bounds; reference range parsing."""

from __future__ import annotations

from decimal import Decimal

import pytest

from leukofhir.rules.compare import above, at_least, at_most, below
from leukofhir.rules.ranges import Range, classify, parse_range

D = Decimal


@pytest.mark.parametrize(
    ("number", "comparator", "limit", "expected"),
    [
        ("2.99", "", "3.0", True),
        ("3.0", "", "3.0", False),
        ("3.01", "", "3.0", False),
        ("0.5", "<", "1.0", True),  # everything below 0.5 is below 1.0
        ("1.0", "<", "1.0", True),  # below 1.0
        ("3.5", "<", "3.0", None),  # 3.4 or 2.9: undecided
        ("1.0", "<=", "1.0", None),  # 1.0 itself is not below 1.0
        ("0.9", "<=", "1.0", True),
        ("11", ">", "10.8", False),
        ("3.0", ">", "3.0", False),
        ("2.0", ">", "3.0", None),
        ("3.0", ">=", "3.0", False),
        ("2.9", ">=", "3.0", None),
    ],
)
def test_below(number: str, comparator: str, limit: str, expected: bool | None) -> None:
    assert below(D(number), comparator, D(limit)) is expected


@pytest.mark.parametrize(
    ("number", "comparator", "limit", "expected"),
    [
        ("10.81", "", "10.8", True),
        ("10.8", "", "10.8", False),
        ("11.0", ">", "10.8", True),
        ("10.8", ">", "10.8", True),
        ("10.0", ">", "10.8", None),
        ("10.8", ">=", "10.8", None),
        ("10.9", ">=", "10.8", True),
        ("0.5", "<", "10.8", False),
        ("10.8", "<=", "10.8", False),
        ("11", "<", "10.8", None),
    ],
)
def test_above(number: str, comparator: str, limit: str, expected: bool | None) -> None:
    assert above(D(number), comparator, D(limit)) is expected


def test_at_most_and_at_least_are_negations() -> None:
    assert at_most(D(5), "", D(5)) is True
    assert at_most(D(5), ">", D(5)) is False
    assert at_most(D(4), ">", D(5)) is None
    assert at_least(D(5), "", D(5)) is True
    assert at_least(D(5), "<", D(5)) is False
    assert at_least(D(6), "<", D(5)) is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("4.3-10.8", Range(D("4.3"), D("10.8"))),
        ("4.3 - 10.8", Range(D("4.3"), D("10.8"))),
        ("4300 to 10800", Range(D(4300), D(10800))),
        ("0.0 to 0.45", Range(D("0.0"), D("0.45"))),
        ("70_105", Range(D(70), D(105))),
        ("4.3–10.8", Range(D("4.3"), D("10.8"))),
        ("-2-2", Range(D(-2), D(2))),
        ("<30", Range(high=D(30), high_inclusive=False)),
        ("<=30", Range(high=D(30))),
        ("≤30", Range(high=D(30))),
        ("> 50", Range(low=D(50), low_inclusive=False)),
        (">=50", Range(low=D(50))),
    ],
)
def test_parse_range(text: str, expected: Range) -> None:
    assert parse_range(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "negative",
        "10.8-4.3",
        "4,300-10,800",
        "4.3-10.8 10*3/uL",
        "<9 mcg/dL:  Acceptable",
        "<1 = Susceptible, >= 1 = Resistant",
    ],
)
def test_unparsed_ranges(text: str) -> None:
    assert parse_range(text) is None


@pytest.mark.parametrize(
    ("number", "comparator", "text", "code"),
    [
        ("4.29", "", "4.3-10.8", "L"),
        ("4.3", "", "4.3-10.8", "N"),
        ("10.8", "", "4.3-10.8", "N"),
        ("10.81", "", "4.3-10.8", "H"),
        ("29", "", "<30", "N"),
        ("30", "", "<30", "H"),
        ("50", "", ">50", "L"),
        ("51", "", ">50", "N"),
        ("0.5", "<", "4.3-10.8", "L"),
        ("11", ">", "4.3-10.8", "H"),
        ("5", "<", "4.3-10.8", ""),
    ],
)
def test_classify(number: str, comparator: str, text: str, code: str) -> None:
    normal = parse_range(text)
    assert normal is not None
    assert classify(D(number), comparator, normal) == code


@pytest.mark.parametrize(
    "text",
    ["4.0-1" + "1" * 5000, "1" * 19 + "-2" + "0" * 18, "<0.0000000000000000001", ">=" + "9" * 40],
)
def test_a_range_with_a_number_beyond_the_bounds_is_not_parsed(text: str) -> None:
    # its bound would be written as a number: 5,000 digits that Python's json refuses
    assert parse_range(text) is None

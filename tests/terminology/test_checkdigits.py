"""The LOINC mod-10 and SNOMED CT Verhoeff check digits, on known good and bad codes."""

from __future__ import annotations

import pytest

from leukofhir.terminology.checkdigits import (
    is_loinc,
    is_sctid,
    loinc_check_digit,
    verhoeff_check_digit,
    verhoeff_valid,
)


@pytest.mark.parametrize(
    ("number", "digit"),
    [("6690", 2), ("804", 5), ("718", 7), ("26464", 8), ("33256", 9), ("58410", 2), ("1", 8)],
)
def test_loinc_check_digit(number: str, digit: int) -> None:
    assert loinc_check_digit(number) == digit


@pytest.mark.parametrize("code", ["6690-2", "751-8", "770-8", "30229-9", "74398-9", "71676-1"])
def test_good_loinc(code: str) -> None:
    assert is_loinc(code)


@pytest.mark.parametrize(
    "code",
    [
        "6690-3",  # wrong check digit
        "8675-3",  # the fake LOINC of a corpus message
        "xx625-4",  # the malformed code of realm-cj-badloinc.hl7
        "6690",  # no check digit
        "6690-22",
        "",
        "66 90-2",
    ],
)
def test_bad_loinc(code: str) -> None:
    assert not is_loinc(code)


def test_loinc_check_digit_refuses_non_digits() -> None:
    with pytest.raises(ValueError, match="not a LOINC number"):
        loinc_check_digit("12a")


def test_verhoeff_reference_vector() -> None:
    # the textbook example: 236 → check digit 3
    assert verhoeff_check_digit("236") == 3
    assert verhoeff_valid("2363")
    assert not verhoeff_valid("2364")
    assert not verhoeff_valid("2x63")


@pytest.mark.parametrize(
    "sctid",
    [
        "138875005",  # SNOMED CT concept (root)
        "404684003",  # Clinical finding
        "71388002",  # Procedure
        "386661006",  # Fever
        "22298006",  # Myocardial infarction
        "84828003",  # the leukofhir findings:
        "165517008",
        "17182001",
        "71960002",
        "111583006",
        "127034005",
    ],
)
def test_good_sctid(sctid: str) -> None:
    assert is_sctid(sctid)


@pytest.mark.parametrize(
    "sctid",
    [
        "84828004",  # wrong check digit
        "165517009",
        "17182002",
        "12345",  # too short
        "0404684003",  # leading zero
        "1234567890123456789",  # too long
        "lymphopenia",
    ],
)
def test_bad_sctid(sctid: str) -> None:
    assert not is_sctid(sctid)


def test_every_single_digit_error_is_caught() -> None:
    # Verhoeff's guarantee: any one wrong digit fails the check
    good = "165517008"
    for position in range(len(good)):
        for digit in "0123456789":
            if digit != good[position]:
                assert not verhoeff_valid(good[:position] + digit + good[position + 1 :])


def test_every_adjacent_transposition_is_caught() -> None:
    good = "127034005"
    for position in range(len(good) - 1):
        a, b = good[position], good[position + 1]
        if a != b:
            swapped = good[:position] + b + a + good[position + 2 :]
            assert not verhoeff_valid(swapped)

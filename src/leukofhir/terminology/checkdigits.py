"""Check digits of the two code systems leukofhir writes: LOINC (mod 10) and SNOMED CT (Verhoeff).

Both are used by the tests (every code in the packaged tables must pass) and by the
loaders (a user's mapping or rule file naming a malformed code is refused).

LOINC: the LOINC Users' Guide, "Calculating Mod 10 check digits": number the digits
of the code (without its check digit) from the right; double those in odd positions,
add the digits of the result to the digits in even positions; the check digit brings
the sum to the next multiple of 10 (this is the Luhn algorithm).

SNOMED CT: the SNOMED CT Technical Implementation Guide, "Check-digit" (section
6.7): the last digit of an SCTID is a Verhoeff check digit over the whole identifier,
which must be 6 to 18 digits long, without a leading zero.
"""

from __future__ import annotations

import re

__all__ = ["is_loinc", "is_sctid", "loinc_check_digit", "verhoeff_check_digit", "verhoeff_valid"]

_LOINC = re.compile(r"(\d{1,7})-(\d)")
_SCTID = re.compile(r"[1-9]\d{5,17}")

# Verhoeff tables: the dihedral group D5 multiplication, the position permutation, inverses.
_D = (
    (0, 1, 2, 3, 4, 5, 6, 7, 8, 9),
    (1, 2, 3, 4, 0, 6, 7, 8, 9, 5),
    (2, 3, 4, 0, 1, 7, 8, 9, 5, 6),
    (3, 4, 0, 1, 2, 8, 9, 5, 6, 7),
    (4, 0, 1, 2, 3, 9, 5, 6, 7, 8),
    (5, 9, 8, 7, 6, 0, 4, 3, 2, 1),
    (6, 5, 9, 8, 7, 1, 0, 4, 3, 2),
    (7, 6, 5, 9, 8, 2, 1, 0, 4, 3),
    (8, 7, 6, 5, 9, 3, 2, 1, 0, 4),
    (9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
)
_P = (
    (0, 1, 2, 3, 4, 5, 6, 7, 8, 9),
    (1, 5, 7, 6, 2, 8, 3, 0, 9, 4),
    (5, 8, 0, 3, 7, 9, 6, 1, 4, 2),
    (8, 9, 1, 6, 0, 4, 3, 5, 2, 7),
    (9, 4, 5, 3, 1, 2, 6, 8, 7, 0),
    (4, 2, 8, 6, 5, 7, 3, 9, 0, 1),
    (2, 7, 9, 3, 8, 0, 6, 4, 1, 5),
    (7, 0, 4, 6, 9, 1, 3, 2, 5, 8),
)
_INV = (0, 4, 3, 2, 1, 5, 6, 7, 8, 9)


def loinc_check_digit(number: str) -> int:
    """The mod-10 check digit of a LOINC code's number part (``"6690"`` → 2)."""
    if not number.isdigit():
        raise ValueError(f"not a LOINC number: {number!r}")
    total = 0
    for position, char in enumerate(reversed(number)):
        digit = int(char)
        if position % 2 == 0:  # odd positions counted from 1 at the right: doubled
            digit *= 2
            digit = digit - 9 if digit > 9 else digit
        total += digit
    return (10 - total % 10) % 10


def is_loinc(code: str) -> bool:
    """``code`` is shaped like a LOINC code (``NNNNN-N``) and its check digit is right."""
    match = _LOINC.fullmatch(code)
    return match is not None and loinc_check_digit(match[1]) == int(match[2])


def _verhoeff(digits: str, *, with_check: bool) -> int:
    check = 0
    offset = 0 if with_check else 1
    for position, char in enumerate(reversed(digits)):
        check = _D[check][_P[(position + offset) % 8][int(char)]]
    return check


def verhoeff_check_digit(number: str) -> int:
    """The Verhoeff check digit to append to ``number`` (``"236"`` → 3)."""
    if not number.isdigit():
        raise ValueError(f"not a number: {number!r}")
    return _INV[_verhoeff(number, with_check=False)]


def verhoeff_valid(number: str) -> bool:
    """``number`` (check digit last) passes the Verhoeff check."""
    return number.isdigit() and _verhoeff(number, with_check=True) == 0


def is_sctid(code: str) -> bool:
    """``code`` is shaped like a SNOMED CT identifier and its Verhoeff check digit is right."""
    return bool(_SCTID.fullmatch(code)) and verhoeff_valid(code)

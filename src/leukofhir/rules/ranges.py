"""A lab's reference range as sent (OBX-7, or referenceRange.text), when it is plain enough.

Parsed: ``4.3-10.8``, ``4.3 - 10.8``, ``4300 to 10800``, ``70_105``, ``4.3–10.8`` (both
ends in the normal range), ``<30`` / ``<=30`` (normal below), ``>50`` / ``>=50``
(normal above).  Anything else (text, units, several ranges, thousands separators)
is not parsed, and the interpretation falls back to the next source; so is a range with
a number beyond the input bounds (:mod:`leukofhir.limits`).  The range is in
the unit the value was sent in, so it is compared with the value as sent, never with
the normalised one.
"""

from __future__ import annotations

import re
from decimal import Decimal
from functools import lru_cache
from typing import NamedTuple

from leukofhir.limits import number_problem
from leukofhir.rules.compare import above, at_least, at_most, below

__all__ = ["Range", "classify", "parse_range"]

_NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)"
_BETWEEN = re.compile(rf"\s*({_NUMBER})\s*(?:-|–|—|_|to)\s*({_NUMBER})\s*", re.IGNORECASE)
_ONE_SIDED = rf"\s*(<=|>=|<|>|≤|≥)\s*({_NUMBER})\s*"  # rarer: compiled on first use
_SYMBOL = {"≤": "<=", "≥": ">="}


class Range(NamedTuple):
    """The normal range: above ``low`` (inclusive or not) and below ``high``."""

    low: Decimal | None = None
    high: Decimal | None = None
    low_inclusive: bool = True
    high_inclusive: bool = True


@lru_cache(maxsize=1024)
def parse_range(text: str) -> Range | None:
    """The range ``text`` states, or None when it is not a plain numeric range."""
    if match := _BETWEEN.fullmatch(text):
        low, high = Decimal(match[1]), Decimal(match[2])
        if number_problem(low) or number_problem(high):
            return None
        return Range(low, high) if low <= high else None
    if match := re.fullmatch(_ONE_SIDED, text):
        symbol, number = _SYMBOL.get(match[1], match[1]), Decimal(match[2])
        if number_problem(number):
            return None
        if symbol.startswith("<"):
            return Range(high=number, high_inclusive=symbol == "<=")
        return Range(low=number, low_inclusive=symbol == ">=")
    return None


def classify(number: Decimal, comparator: str, normal: Range) -> str:
    """``L``, ``N`` or ``H`` for the value against ``normal``; ``""`` when a bound cannot say."""
    low = high = False
    if normal.low is not None:
        test = below if normal.low_inclusive else at_most
        low_result = test(number, comparator, normal.low)
        if low_result is None:
            return ""
        low = low_result
    if normal.high is not None:
        test = above if normal.high_inclusive else at_least
        high_result = test(number, comparator, normal.high)
        if high_result is None:
            return ""
        high = high_result
    return "L" if low else "H" if high else "N"

"""Three-valued comparisons of a value that may be an open bound.

A value is a Decimal with a comparator: ``""`` (exact), ``<``, ``<=``, ``>``, ``>=``
(the true value lies beyond the number).  Each test answers True or False when every
value the bound allows gives that answer, and None when the bound cannot decide:
``<0.5`` is below 1.0 (True), ``<3.5`` below 3.0 is undecided (None), ``>11`` above
10.8 is True.  Never is the bound's number used as if it were the exact value.
"""

from __future__ import annotations

from decimal import Decimal

__all__ = ["above", "at_least", "at_most", "below"]


def below(number: Decimal, comparator: str, limit: Decimal) -> bool | None:
    """value < limit."""
    if not comparator:
        return number < limit
    if comparator == "<":
        return True if number <= limit else None
    if comparator == "<=":
        return True if number < limit else None
    # ">" or ">=": the value is at least the number
    return False if number >= limit else None


def above(number: Decimal, comparator: str, limit: Decimal) -> bool | None:
    """value > limit."""
    if not comparator:
        return number > limit
    if comparator == ">":
        return True if number >= limit else None
    if comparator == ">=":
        return True if number > limit else None
    # "<" or "<=": the value is at most the number
    return False if number <= limit else None


def at_most(number: Decimal, comparator: str, limit: Decimal) -> bool | None:
    """value <= limit."""
    result = above(number, comparator, limit)
    return None if result is None else not result


def at_least(number: Decimal, comparator: str, limit: Decimal) -> bool | None:
    """value >= limit."""
    result = below(number, comparator, limit)
    return None if result is None else not result

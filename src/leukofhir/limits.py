"""The bounds on what leukofhir reads, so that no input can make it slow or its output huge.

Every bound is far beyond what a laboratory sends; each is checked where the input is
read, before anything is formatted or copied, and each refusal is a located issue (the
README's "Limits" section says what every edge answers):

- ``MAX_DEPTH``: nesting of JSON objects and arrays in one FHIR document or NDJSON line
  (a CBC Bundle nests about 10 deep).  Deeper: the document (or line) is rejected.
- ``MAX_REFERENCE``: characters of a FHIR reference (``Reference.reference``, an entry's
  ``fullUrl``).  Longer: not followed (a result not read, with a warning); as the
  ``subject`` or ``fullUrl`` of a resource leukofhir uses, which the output would
  write, the report is rejected (error 104, ``too-long``).
- ``MAX_DIGITS``, ``MAX_PLACES``: a number has at most 18 significant digits (the
  precision XML Schema asks every processor of ``xs:decimal``, FHIR's decimal, to
  support; HL7 v2 NM is 16 characters), at most 18 digits before the point (below
  1E+18) and none finer than the 18th after it (1E-18).  Checked on the Decimal's
  digits and exponent, never on its fixed-point text, which for ``1E+999999999`` would
  be a gigabyte.  Beyond: the value is not read as a number (not evaluated, with a
  located warning).

Within these bounds the arithmetic of derived counts is exact (:data:`EXACT`).
"""

from __future__ import annotations

from decimal import (
    Context,
    Decimal,
    DecimalException,
    DivisionByZero,
    Inexact,
    InvalidOperation,
    Overflow,
)

from leukofhir.model import Value

__all__ = [
    "EXACT",
    "MAX_DEPTH",
    "MAX_DIGITS",
    "MAX_PLACES",
    "MAX_REFERENCE",
    "number_problem",
    "sent_number",
    "sent_text",
]

MAX_DEPTH = 100
MAX_REFERENCE = 4096
MAX_DIGITS = 18
MAX_PLACES = 18  # digits before the point, and digits after it

# Derived counts (WBC × percent / 100, segmented + band) multiply and add bounded numbers:
# a product lies below 1E+36 with no digit finer than 1E-36, and a sum of two of them,
# over 100, spans fewer than 80 places, so 80 digits hold every result exactly (the default
# context's 28 would round, and a rounded product can cross a band edge: 1.49999…97 is
# neutropenia, 1.5 is not).  Inexact is trapped all the same: a result that would have to
# be rounded raises rather than being used.
EXACT = Context(prec=80, traps=[Inexact, InvalidOperation, Overflow, DivisionByZero])


def number_problem(number: Decimal) -> str:
    """Why ``number`` is beyond what leukofhir reads, or ``""`` when it is within bounds.

    Reads the digit count and the exponent (and ``str()``, which writes a large or tiny
    number in exponent form): the fixed-point text is never made."""
    if number.is_finite() and len(text := str(number)) <= MAX_DIGITS and "E" not in text:
        return ""  # the common case, cheaply: at most 18 characters in plain notation
    _, digits, exponent = number.as_tuple()
    if not isinstance(exponent, int):
        return f"{number} is not a finite number"
    if len(digits) > MAX_DIGITS:
        return (
            f"a number of {len(digits):,} significant digits is beyond what leukofhir reads"
            f" (at most {MAX_DIGITS})"
        )
    if exponent + len(digits) > MAX_PLACES:
        return f"a number of about 1E+{number.adjusted()} is beyond any physical range"
    if exponent < -MAX_PLACES:
        return (
            f"a number with a digit at 1E{exponent} is finer than leukofhir reads"
            f" (at most {MAX_PLACES} digits after the point)"
        )
    return ""


def sent_number(text: str, number: Decimal, comparator: str = "") -> Value:
    """A value as sent (``text``) whose number is ``number``; beyond the bounds the number
    is not read, and ``problem`` says why (the text travels on, as for any text value)."""
    if problem := number_problem(number):
        return Value(text, None, comparator, problem)
    return Value(text, number, comparator)


def sent_text(text: str, number_text: str, comparator: str = "") -> Value:
    """:func:`sent_number` for a number still in text (``number_text``, a number by the
    reader's pattern), whose exponent may be beyond what a Decimal holds at all
    (``1E+9999999999999999999``: 19 digits)."""
    try:
        number = Decimal(number_text)
    except DecimalException:
        problem = "a number with an exponent of 19 digits or more is beyond any physical range"
        return Value(text, None, comparator, problem)
    return sent_number(text, number, comparator)

"""JSON out with orjson, numbers digit for digit.

orjson has no way to write a number from its text, so a :class:`RawDecimal` goes
through ``default`` as an :class:`orjson.Fragment`: its text is written as it is,
a bare JSON number.  The marker is the type, which only
:func:`leukofhir.emit.datatypes.decimal` makes (from a Decimal's fixed-point text):
every string that came from the input is a plain ``str`` and is written as a JSON
string, whatever characters it holds.  (An earlier writer marked numbers with
``\\u001e`` inside strings and replaced the marks afterwards: an input string holding
the marks came out as a number.)
"""

from __future__ import annotations

from typing import Any

import orjson

from leukofhir.emit.datatypes import RawDecimal

_OPTIONS = orjson.OPT_PASSTHROUGH_SUBCLASS


def _default(value: object) -> orjson.Fragment:
    if isinstance(value, RawDecimal):
        return orjson.Fragment(str(value))
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def dumps(document: Any, *, indent: bool = False) -> bytes:
    option = _OPTIONS | (orjson.OPT_INDENT_2 if indent else 0)
    return orjson.dumps(document, default=_default, option=option)

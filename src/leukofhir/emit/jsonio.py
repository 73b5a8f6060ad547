"""JSON out with orjson, numbers digit for digit.

orjson has no way to write a number from its text, so a :class:`RawDecimal` goes
through as a marked string (``"\\u001e5.100\\u001e"``) and one regular
expression turns every marked string into the bare number.  No input text can
forge a marker: :func:`leukofhir.emit.datatypes.text` strips control characters.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from leukofhir.emit.datatypes import RawDecimal

_MARKED = re.compile(rb'"\\u001e(-?[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?)\\u001e"')


def _default(value: object) -> str:
    if isinstance(value, RawDecimal):
        return f"\x1e{value}\x1e"
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def dumps(document: Any, *, indent: bool = False) -> bytes:
    option = orjson.OPT_PASSTHROUGH_SUBCLASS | (orjson.OPT_INDENT_2 if indent else 0)
    out = orjson.dumps(document, default=_default, option=option)
    return _MARKED.sub(rb"\1", out) if b"\\u001e" in out else out

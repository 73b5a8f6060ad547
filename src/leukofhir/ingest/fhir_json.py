"""FHIR JSON text → Python values, with every decimal exactly as sent; canonical bytes.

FHIR ``decimal`` values keep their precision (``5.100`` is not ``5.1``), and a float
cannot hold that.  A document (or one NDJSON line) is therefore parsed by the standard
library's C scanner with ``parse_float=Decimal``: each JSON number with a fraction or
an exponent becomes the :class:`~decimal.Decimal` of its own text, integers stay
``int``.  Measured here on a 30 kB Bundle of 20 Observations: 140 µs, against 70 µs for
``orjson.loads`` (which gives floats, and so loses ``5.100`` and ``1.0E3``); the
difference is about 2 % of what one report costs once its resources are validated,
and it spares a second pass that would recover the text of each number.

``NaN`` and ``Infinity`` (which the standard library would accept) are refused, so
the same texts are JSON here as for orjson.  An integer too long for Python's ``int``
(over 4,300 digits) is read as a Decimal, so that it is refused as a number beyond the
bounds (:mod:`leukofhir.limits`) like any other, instead of failing the document.
Nesting deeper than ``MAX_DEPTH`` is refused, with the line and column where it goes
too deep; it is found by a walk of the parsed tree's objects and arrays (about 2 % of
what a Bundle costs to read: 50 µs for the 20-Observation benchmark Bundle on the
shared VM), which a small document with fewer brackets than the limit (an NDJSON line)
skips.  A ``\\ud800`` escape that is not half of a surrogate pair is refused
(it is no Unicode character, and no UTF-8 writer could put it out again); so is a
number whose exponent has 19 digits or more (no Decimal holds it).
:mod:`orjson` serialises the canonical bytes of a report (sorted keys, decimals as
their text) from which its digest is computed.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Iterator
from decimal import Decimal, DecimalException
from typing import Any

import orjson

from leukofhir.limits import MAX_DEPTH

__all__ = ["JsonError", "canonical_digest", "load_json", "strip_bom"]

_BOM = b"\xef\xbb\xbf"
_INT_DIGITS = 4300  # sys.int_info.default_max_str_digits
_DEEP = f"objects and arrays nest deeper than {MAX_DEPTH} levels (leukofhir reads at most that)"
_COUNTED = 4096  # bytes up to which the brackets are counted before walking
_SURROGATE = "a \\u escape of half a UTF-16 surrogate pair is no Unicode character"
_FLOAT = re.compile(r"-?\d+(?:\.\d+)?[eE][+-]?\d+")
_HUGE = "of 19 digits or more, beyond what any decimal holds"
_ESCAPE = re.compile(r"\\(?:u([0-9a-fA-F]{4})|.)")  # every escape, \\\\ included, left to right


class JsonError(ValueError):
    """The text is not JSON leukofhir reads; ``str()`` says why and where (line, column)."""

    def __init__(self, reason: str, line: int | None = None, column: int | None = None) -> None:
        where = f" at line {line} column {column}" if line is not None else ""
        super().__init__(reason + where)
        self.reason = reason
        self.line = line
        self.column = column


def strip_bom(data: bytes) -> bytes:
    return data[len(_BOM) :] if data.startswith(_BOM) else data


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _integer(text: str) -> int | Decimal:
    """A JSON integer; one too long for ``int()`` (4,300 digits) stays a number, as a Decimal."""
    return int(text) if len(text) < _INT_DIGITS else Decimal(text)


def load_json(data: bytes) -> Any:
    """The JSON value of ``data`` (UTF-8), decimals as :class:`Decimal`; :class:`JsonError`."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - data.rfind(b"\n", 0, exc.start)
        raise JsonError(f"not UTF-8 text (byte {exc.start})", line, column) from None
    try:
        value = json.loads(
            text, parse_float=Decimal, parse_int=_integer, parse_constant=_refuse_constant
        )
    except json.JSONDecodeError as exc:
        raise JsonError(exc.msg, exc.lineno, exc.colno) from None
    except RecursionError:
        raise _too_deep(text) from None
    except DecimalException:  # parse_float: an exponent of 19 digits, which no Decimal holds
        raise _unreadable_number(text) from None
    except ValueError as exc:  # NaN, Infinity: the first capital N or I outside a string
        offset = next((at for at, char in _structure(text) if char in "NI"), 0)
        raise JsonError(str(exc), *_line_column(text, offset)) from None
    if (
        type(value) in (dict, list)
        and _may_nest_too_deep(data)
        and _deeper_than(value, MAX_DEPTH - 1)
    ):
        raise _too_deep(text)
    if b"\\" in data and (lone := _lone_surrogate(text)) is not None:  # only escapes make one
        raise JsonError(_SURROGATE, *_line_column(text, lone))
    return value


def _may_nest_too_deep(data: bytes) -> bool:
    """False when ``data`` is so small and has so few brackets that it cannot nest deeper
    than ``MAX_DEPTH`` (counting costs a third of the walk for an NDJSON line; for a large
    Bundle, which has more brackets than the limit anyway, it is skipped)."""
    return len(data) > _COUNTED or data.count(b"{") + data.count(b"[") > MAX_DEPTH


def _lone_surrogate(text: str) -> int | None:
    """The offset of a ``\\uD800``-``\\uDFFF`` escape that is not half of a pair, if any:
    JSON lets one through, but it is no Unicode character and no UTF-8 writer takes it."""
    pending = -1  # offset of a high surrogate escape still waiting for its low half
    for match in _ESCAPE.finditer(text):
        unit = int(match[1], 16) if match[1] else -1
        if pending >= 0:
            if 0xDC00 <= unit <= 0xDFFF and match.start() == pending + 6:
                pending = -1
                continue
            return pending
        if 0xD800 <= unit <= 0xDBFF:
            pending = match.start()
        elif 0xDC00 <= unit <= 0xDFFF:
            return match.start()
    return pending if pending >= 0 else None


def _deeper_than(node: Any, limit: int) -> bool:
    """Whether objects and arrays below ``node`` (an object or array) nest deeper than
    ``limit`` levels; recurses at most ``limit`` + 1 frames."""
    for child in node.values() if type(node) is dict else node:
        kind = type(child)
        if (kind is dict or kind is list) and (limit == 0 or _deeper_than(child, limit - 1)):
            return True
    return False


def _too_deep(text: str) -> JsonError:
    """The error for ``text`` nesting deeper than ``MAX_DEPTH``, at the bracket that does."""
    depth = 0
    for offset, char in _structure(text):
        if char in "{[":
            depth += 1
            if depth > MAX_DEPTH:
                return JsonError(_DEEP, *_line_column(text, offset))
        elif char in "}]":
            depth -= 1
    return JsonError(_DEEP)  # pragma: no cover - only called on text that nests too deep


def _unreadable_number(text: str) -> JsonError:
    """The error for the first number of ``text`` that no Decimal holds, where it stands."""
    for offset, char in _structure(text):
        if char in "-0123456789" and (match := _FLOAT.match(text, offset)):
            try:
                Decimal(match[0])
            except DecimalException:
                where = _line_column(text, offset)
                return JsonError(f"the number {match[0][:40]} has an exponent {_HUGE}", *where)
    return JsonError(f"a number has an exponent {_HUGE}")  # pragma: no cover


def _structure(text: str) -> Iterator[tuple[int, str]]:
    """(offset, character) of every character outside strings (to locate a failure: slow)."""
    in_string = escaped = False
    for offset, char in enumerate(text):
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        else:
            yield offset, char


def _line_column(text: str, offset: int) -> tuple[int, int]:
    return text.count("\n", 0, offset) + 1, offset - text.rfind("\n", 0, offset)


def _default(value: Any) -> str:
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(type(value).__name__)  # pragma: no cover - only JSON values reach here


def canonical_digest(resources: Iterable[Any]) -> str:
    """sha256 hex of the resources serialised with sorted keys (decimals as sent).

    The same resources give the same digest wherever they stood in the input, so the
    ids derived from it do not change when a sender reorders a Bundle.
    """
    digest = hashlib.sha256()
    for resource in resources:
        try:
            digest.update(orjson.dumps(resource, default=_default, option=orjson.OPT_SORT_KEYS))
        except (TypeError, orjson.JSONEncodeError):  # an int beyond 64 bits, say
            digest.update(json.dumps(resource, default=_default, sort_keys=True).encode())
        digest.update(b"\n")
    return digest.hexdigest()

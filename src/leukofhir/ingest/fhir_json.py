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
the same texts are JSON here as for orjson.  :mod:`orjson` serialises the canonical
bytes of a report (sorted keys, decimals as their text) from which its digest is
computed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

import orjson

__all__ = ["JsonError", "canonical_digest", "load_json", "strip_bom"]

_BOM = b"\xef\xbb\xbf"


class JsonError(ValueError):
    """The text is not JSON; ``str()`` says where (line and column)."""


def strip_bom(data: bytes) -> bytes:
    return data[len(_BOM) :] if data.startswith(_BOM) else data


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def load_json(data: bytes) -> Any:
    """The JSON value of ``data`` (UTF-8), decimals as :class:`Decimal`; :class:`JsonError`."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise JsonError(f"not UTF-8 text (byte {exc.start})") from None
    try:
        return json.loads(text, parse_float=Decimal, parse_constant=_refuse_constant)
    except json.JSONDecodeError as exc:
        raise JsonError(f"{exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except (ValueError, RecursionError) as exc:  # NaN, a 5000-digit integer, deep nesting
        raise JsonError(str(exc) or type(exc).__name__) from None


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

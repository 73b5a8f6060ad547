"""FHIR R4 datatypes as plain dicts: the small pieces every resource builder uses.

Text from the input is cleaned on the way in (FHIR strings may hold no control
characters but tab, CR and LF, and no leading/trailing blanks); codes get their
whitespace folded; numbers travel as :class:`RawDecimal` so that the JSON writer
puts them out exactly as sent.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from decimal import Decimal
from functools import lru_cache
from typing import Any
from urllib.parse import quote

from leukofhir import __version__
from leukofhir.limits import MAX_PLACES
from leukofhir.model import Coding, Identifier

Json = dict[str, Any]

BASE = "https://leukofhir.dev/fhir"
NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, BASE)
_NAMESPACE_BYTES = NAMESPACE.bytes
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
V3_INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
DEVICE: Json = {
    "type": "Device",
    "identifier": {"system": f"{BASE}/sid/device", "value": f"leukofhir-{__version__}"},
    "display": f"leukofhir {__version__}",
}

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_BLANKS = re.compile(r"\s+")
_PLAIN_CODE = re.compile(r"[!-~]+(?: [!-~]+)*\Z")  # printable ASCII, single inner spaces
_URL_SAFE = re.compile(r"[A-Za-z0-9._~:@/-]*\Z")  # legal as is in a query (RFC 3986 §3.4)
_OID = re.compile(r"^[0-2](\.(0|[1-9][0-9]*))+$")
# magnitudes a written number may have: 1E+18 at most for a value as sent, about 1E+36 to
# 1E-40 for a derived count (a product of two bounded numbers)
_MAX_PLACES = 4 * MAX_PLACES


class RawDecimal(str):
    """A FHIR decimal written into JSON as a number, digit for digit (see :mod:`.jsonio`).

    Only :func:`decimal` makes one, from a finite Decimal's fixed-point text; input text is
    never a RawDecimal, so no input can be written as a number."""

    __slots__ = ()


def decimal(number: Decimal) -> int | float | RawDecimal:
    """``Decimal('05.100')`` → ``5.100``: leading zeros and ``+`` go (JSON forbids them),
    trailing zeros stay (they carry the precision the lab sent).

    Where an ``int`` or a ``float`` prints back digit for digit (``41``, ``9.51``) it is
    used as is; only the rest (``5.100``, ``0.80``) takes the slower RawDecimal path.
    A property test checks that the JSON text always equals the decimal's own text.

    Every number reaching here is within :mod:`leukofhir.limits` (the readers refuse the
    others); a number that is not finite, or whose fixed-point text would be longer than
    :data:`_MAX_PLACES`, raises ``ValueError`` before it is formatted (a fault of ours,
    which the pipeline rejects with code 207, rather than a gigabyte of zeros).
    """
    if not number.is_finite() or not -_MAX_PLACES < number.adjusted() < _MAX_PLACES:
        raise ValueError("a number beyond the output bounds reached the JSON writer")
    digits = format(number, "f")
    if "." not in digits:
        if len(digits) < 16 and not digits.startswith("-0"):
            return int(digits)
    elif repr(as_float := float(digits)) == digits:
        return as_float
    return RawDecimal(digits)


def text(value: str) -> str:
    """Input text made a valid FHIR string ("" when nothing is left)."""
    if value.isprintable():  # the common case, and a cheap test
        return value.strip()
    return _CONTROL.sub("", value).strip()


def code(value: str) -> str:
    """Input text made a valid FHIR code (inner whitespace folded)."""
    if _PLAIN_CODE.match(value):  # the common case
        return value
    return _BLANKS.sub(" ", _CONTROL.sub("", value)).strip()


def urn(kind: str, *parts: str) -> str:
    """A deterministic ``urn:uuid:`` (UUID v5) for one resource of one input."""
    return f"urn:uuid:{uuid_value(kind, *parts)}"


def uuid_value(*parts: str) -> str:
    """``str(uuid.uuid5(NAMESPACE, "|".join(parts)))``, RFC 4122 §4.3, written from the
    SHA-1's hex digits without building a UUID object or a byte array (checked against
    :func:`uuid.uuid5` in the tests): the 13th digit is the version, 5; the 17th keeps
    its two low bits under the variant's ``10``."""
    h = hashlib.sha1(_NAMESPACE_BYTES + "|".join(parts).encode()).hexdigest()
    return f"{h[:8]}-{h[8:12]}-5{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:32]}"


_VARIANT = {digit: format(int(digit, 16) & 0x3 | 0x8, "x") for digit in "0123456789abcdef"}


def coding(value: Coding) -> Json:
    out: Json = {}
    if value.system:
        out["system"] = value.system
    out["code"] = code(value.code)
    if display := text(value.display):
        out["display"] = display
    return out


def concept(codings: tuple[Coding, ...], label: str = "") -> Json:
    out: Json = {}
    if codings:
        out["coding"] = [coding(c) for c in codings if code(c.code)]
    if label := text(label):
        out["text"] = label
    return out


@lru_cache(maxsize=1024)
def system_uri(authority: str, kind: str) -> str:
    """An HL7 assigning authority / namespace as an ``Identifier.system`` URI."""
    authority = authority.strip()
    if not authority:
        return f"{BASE}/sid/{kind}"
    if _OID.match(authority):
        return f"urn:oid:{authority}"
    if ":" in authority and " " not in authority:
        return authority
    return f"{BASE}/sid/{kind}/{quote(authority, safe='')}"


def identifier(value: Identifier, kind: str) -> Json:
    out: Json = {}
    if value.type_code:
        out["type"] = {"coding": [{"system": V2_0203, "code": code(value.type_code)}]}
    out["system"] = system_uri(value.system, kind)
    out["value"] = text(value.value)
    return out


def if_none_exist(ident: Json) -> str:
    """The ``ifNoneExist`` search for one identifier (``identifier=system|value``), with a
    ``|`` inside the value escaped as the FHIR search syntax asks, then percent-encoded."""
    value = ident["value"].replace("|", "\\|")
    return f"identifier={_quote(ident['system'])}%7C{_quote(value)}"


def conditional_update(kind: str, ident: Json) -> Json:
    """The ``request`` of a conditional update on one identifier (FHIR R4 http.html
    §3.1.0.4.3): 0 matches → created, 1 → replaced; the way a stateless interface engine
    sends a newer version of a result."""
    return {"method": "PUT", "url": f"{kind}?{if_none_exist(ident)}"}


def logical_reference(kind: str, key: str) -> Json:
    """A reference by identifier (``key`` is ``system|value``): it holds in any Bundle and
    on any server where a search by that identifier finds the resource."""
    system, _, value = key.partition("|")
    ident: Json = {"system": system, "value": value} if system else {"value": value}
    return {"type": kind, "identifier": ident}


SOURCE_REFERENCE = f"{BASE}/sid/source-reference"


def source_identifier(reference: str) -> Json | None:
    """An identifier for an input resource known by its reference on the source server
    (``Patient/rb-4471``, an absolute URL) and by no identifier of its own, so that the
    output can write it to another server, and find it again there, by identifier.
    None for ``urn:`` and ``#contained`` references, which mean nothing outside their
    own Bundle.  (A relative reference names a resource of *some* server: two sources
    using the same ``Type/id`` for different resources would meet; absolute URLs do not.)"""
    if not reference or reference.startswith(("urn:", "#")):
        return None
    return {"system": SOURCE_REFERENCE, "value": text(reference)}


def identifier_key(ident: Json) -> str:
    """``system|value`` of an Identifier dict: how the lifecycle names a resource."""
    return f"{ident.get('system', '')}|{ident['value']}"


@lru_cache(maxsize=4096)
def _quote(part: str) -> str:
    return part if _URL_SAFE.match(part) else quote(part, safe="")


def reference(full_url: str) -> Json:
    return {"reference": full_url}

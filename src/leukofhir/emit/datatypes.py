"""FHIR R4 datatypes as plain dicts: the small pieces every resource builder uses.

Text from the input is cleaned on the way in (FHIR strings may hold no control
characters but tab, CR and LF, and no leading/trailing blanks); codes get their
whitespace folded; numbers travel as :class:`RawDecimal` so that the JSON writer
puts them out exactly as sent.
"""

from __future__ import annotations

import re
import uuid
from decimal import Decimal
from typing import Any
from urllib.parse import quote

from leukofhir import __version__
from leukofhir.model import Coding, Identifier

Json = dict[str, Any]

BASE = "https://leukofhir.dev/fhir"
NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, BASE)
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
V3_INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
DEVICE: Json = {
    "type": "Device",
    "identifier": {"system": f"{BASE}/sid/device", "value": f"leukofhir-{__version__}"},
    "display": f"leukofhir {__version__}",
}

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_BLANKS = re.compile(r"\s+")
_OID = re.compile(r"^[0-2](\.(0|[1-9][0-9]*))+$")


class RawDecimal(str):
    """A FHIR decimal written into JSON as a number, digit for digit (see :mod:`.jsonio`)."""

    __slots__ = ()


def decimal(number: Decimal) -> RawDecimal:
    """``Decimal('05.100')`` → ``5.100``: leading zeros and ``+`` go (JSON forbids them),
    trailing zeros stay (they carry the precision the lab sent)."""
    return RawDecimal(format(number, "f"))


def text(value: str) -> str:
    """Input text made a valid FHIR string ("" when nothing is left)."""
    return _CONTROL.sub("", value).strip()


def code(value: str) -> str:
    """Input text made a valid FHIR code (inner whitespace folded)."""
    return _BLANKS.sub(" ", _CONTROL.sub("", value)).strip()


def urn(kind: str, *parts: str) -> str:
    """A deterministic ``urn:uuid:`` (UUID v5) for one resource of one input."""
    return f"urn:uuid:{uuid.uuid5(NAMESPACE, '|'.join((kind, *parts)))}"


def uuid_value(*parts: str) -> str:
    return str(uuid.uuid5(NAMESPACE, "|".join(parts)))


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
    """The ``ifNoneExist`` search for one identifier (``identifier=system|value``)."""
    token = f"{ident['system']}|{ident['value'].replace('|', chr(92) + '|')}"
    return "identifier=" + quote(token, safe="")


def reference(full_url: str) -> Json:
    return {"reference": full_url}

"""FHIR R4 Observation / DiagnosticReport / Patient (parsed JSON) → the core records.

The mapping never trusts types: an element of the wrong JSON type reads as absent
(validation, in :mod:`.fhir_validate`, says what is wrong with the resources the rule
set uses).  Mirrors :mod:`.hl7v2`:

- ``code.coding`` → ``codes`` (system as sent: ``http://loinc.org`` is LOINC);
- ``valueQuantity``: ``value`` exactly as sent (a :class:`Decimal` from the JSON
  text), ``comparator`` kept, unit = ``code`` (with system UCUM when the quantity says
  UCUM) else the ``unit`` string; ``valueInteger``; ``valueString`` read like an HL7
  ``ST`` (``"<0.5"`` is a comparator and a number); other ``value[x]`` are text;
  ``dataAbsentReason`` → no value, and a note saying why;
- ``referenceRange`` (the normal one) ``low``/``high`` → ``"4.3-10.8"`` (``">=4.3"``,
  ``"<=10.8"`` when one-sided); its ``text`` when it has no ``low``/``high``;
- ``interpretation`` codes → ``abnormal_flags``; ``status`` as sent;
- ``effectiveDateTime`` / ``effectiveInstant`` / ``effectivePeriod.start`` → effective
  (a time sent without an offset gets the default zone's, as for HL7 DTM).
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

from leukofhir.errors import Location
from leukofhir.ingest.dtm import DtmError, to_fhir_datetime
from leukofhir.ingest.fhir_index import as_dict, as_list, as_str
from leukofhir.limits import sent_number, sent_text
from leukofhir.model import UCUM, Coding, Identifier, LabObservation, Patient, Value

__all__ = [
    "effective_of",
    "report_fields",
    "to_observation",
    "to_patient",
]

COMPARATORS = ("<=", ">=", "<", ">")
# used with fullmatch; each character matches in one way only (``\d+\.?\d*`` tried every
# split of a digit run: 8,000 digits and a letter took 4 s)
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_NO_OFFSET = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?$")
_OTHER_VALUES = (
    "valueCodeableConcept",
    "valueBoolean",
    "valueRange",
    "valueRatio",
    "valueSampledData",
    "valueTime",
    "valueDateTime",
    "valuePeriod",
)


def decimal_text(number: Decimal | int) -> str:
    return str(number)


def _number(value: Any) -> Decimal | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, Decimal):
        return value
    return None


def codings(concept: Any) -> tuple[Coding, ...]:
    out = []
    for coding in as_list(as_dict(concept).get("coding")):
        coding = as_dict(coding)
        if code := as_str(coding.get("code")).strip():
            system = as_str(coding.get("system")).strip()
            out.append(Coding(code, system, as_str(coding.get("display")), system))
    return tuple(out)


def concept_text(concept: Any) -> str:
    concept = as_dict(concept)
    if text := as_str(concept.get("text")):
        return text
    return next((c.display for c in codings(concept) if c.display), "")


def fhir_datetime(text: str, zone: str) -> str:
    """A FHIR dateTime as sent; a time without an offset gets the default zone's."""
    text = text.strip()
    if not _NO_OFFSET.match(text):
        return text
    try:
        return to_fhir_datetime(re.sub(r"[^0-9.]", "", text), zone)
    except DtmError:
        return text


def effective_of(resource: dict[str, Any], zone: str) -> str:
    text = as_str(resource.get("effectiveDateTime")) or as_str(resource.get("effectiveInstant"))
    text = text or as_str(as_dict(resource.get("effectivePeriod")).get("start"))
    return fhir_datetime(text, zone) if text else ""


def identifiers(resource: dict[str, Any]) -> tuple[Identifier, ...]:
    out = []
    for ident in as_list(resource.get("identifier")):
        ident = as_dict(ident)
        if value := as_str(ident.get("value")):
            type_codes = codings(ident.get("type"))
            out.append(
                Identifier(
                    value, as_str(ident.get("system")), type_codes[0].code if type_codes else ""
                )
            )
    return tuple(out)


# --- Observation --------------------------------------------------------------------------


def to_observation(
    resource: dict[str, Any], location: Location, reference: str, zone: str
) -> LabObservation:
    value_type, value, unit, notes = _value(resource)
    concept = resource.get("code")
    idents = identifiers(resource)
    return LabObservation(
        location=location,
        codes=codings(concept),
        code_text=concept_text(concept),
        value_type=value_type,
        value=value,
        unit=unit,
        reference_range=_reference_range(resource.get("referenceRange")),
        abnormal_flags=tuple(
            c.code for item in as_list(resource.get("interpretation")) for c in codings(item)
        ),
        status=as_str(resource.get("status")),
        effective=effective_of(resource, zone),
        notes=notes + _notes(resource),
        identifier=idents[0].value if idents else "",
        reference=reference,
        identifiers=idents,
    )


def _notes(resource: dict[str, Any]) -> tuple[str, ...]:
    return tuple(
        text
        for note in as_list(resource.get("note"))
        if (text := as_str(as_dict(note).get("text")))
    )


def _value(resource: dict[str, Any]) -> tuple[str, Value | None, Coding | None, tuple[str, ...]]:
    """(value type, value, unit, notes) of an Observation."""
    if "valueQuantity" in resource:
        quantity = as_dict(resource["valueQuantity"])
        return "Quantity", _quantity_value(quantity), quantity_unit(quantity), ()
    if "valueInteger" in resource:
        number = _number(resource["valueInteger"])
        if number is None:
            return "integer", Value(str(resource["valueInteger"]), None), None, ()
        return "integer", sent_number(decimal_text(number), number), None, ()
    if "valueString" in resource:
        return "string", string_value(as_str(resource["valueString"])), None, ()
    for name in _OTHER_VALUES:
        if name in resource:
            sent = resource[name]
            text = concept_text(sent) if name == "valueCodeableConcept" else str(sent)
            return name[5:], Value(text, None), None, ()
    if absent := resource.get("dataAbsentReason"):
        why = concept_text(absent) or next((c.code for c in codings(absent)), "no reason given")
        return "", None, None, (f"no value: {why} (dataAbsentReason)",)
    return "", None, None, ()


def _quantity_value(quantity: dict[str, Any]) -> Value | None:
    raw = quantity.get("value")
    comparator = as_str(quantity.get("comparator"))
    number = _number(raw)
    if number is None:
        return None if raw is None else Value(str(raw), None, comparator)
    return sent_number(comparator + decimal_text(number), number, comparator)


def quantity_unit(quantity: dict[str, Any]) -> Coding | None:
    code = as_str(quantity.get("code")).strip()
    unit = as_str(quantity.get("unit")).strip()
    system = as_str(quantity.get("system")).strip()
    if not code and not unit:
        return None
    return Coding(code or unit, UCUM if code and system == UCUM else "", unit, system)


def string_value(text: str) -> Value:
    """A valueString read like an HL7 ``ST``: a plain number, or a comparator and a number."""
    stripped = text.strip()
    for comparator in ("", *COMPARATORS):
        if stripped.startswith(comparator):
            rest = stripped[len(comparator) :].strip()
            if _NUMBER.fullmatch(rest):
                return sent_text(text, rest, comparator)
    return Value(text, None)


def _reference_range(ranges: Any) -> str:
    """The normal (or untyped) range as text the rules parse: ``4.3-10.8``."""
    candidates = [as_dict(item) for item in as_list(ranges)]
    chosen = next(
        (
            item
            for item in candidates
            if not item.get("type") or any(c.code == "normal" for c in codings(item.get("type")))
        ),
        candidates[0] if candidates else {},
    )
    low = _number(as_dict(chosen.get("low")).get("value"))
    high = _number(as_dict(chosen.get("high")).get("value"))
    if low is not None and high is not None:
        return f"{decimal_text(low)}-{decimal_text(high)}"
    if low is not None:
        return f">={decimal_text(low)}"
    if high is not None:
        return f"<={decimal_text(high)}"
    return as_str(chosen.get("text"))


# --- DiagnosticReport and panels -------------------------------------------------------------


def report_fields(header: dict[str, Any], zone: str) -> dict[str, Any]:
    """The LabReport fields a DiagnosticReport (or panel Observation) gives."""
    placer = filler = None
    for ident in identifiers(header):
        if ident.type_code == "PLAC" and placer is None:
            placer = ident
        elif ident.type_code != "PLAC" and filler is None:
            filler = ident
    issued = as_str(header.get("issued"))
    concept = header.get("code")
    return {
        "codes": codings(concept),
        "code_text": concept_text(concept),
        "effective": effective_of(header, zone),
        "issued": fhir_datetime(issued, zone) if issued else "",
        "status": as_str(header.get("status")),
        "placer_order": placer,
        "filler_order": filler,
    }


# --- Patient --------------------------------------------------------------------------------

_GENDERS = frozenset({"male", "female", "other", "unknown"})


def to_patient(subject: dict[str, Any], resource: dict[str, Any] | None) -> Patient:
    """The patient from the subject reference and, when the input holds it, the Patient."""
    reference = as_str(subject.get("reference"))
    logical = as_dict(subject.get("identifier"))
    idents: tuple[Identifier, ...] = ()
    if value := as_str(logical.get("value")):
        idents = (Identifier(value, as_str(logical.get("system"))),)
    if resource is None:
        return Patient(identifiers=idents, reference=reference)
    name = as_dict(next(iter(as_list(resource.get("name"))), {}))
    gender = as_str(resource.get("gender"))
    return Patient(
        identifiers=identifiers(resource) or idents,
        family=as_str(name.get("family")),
        given=tuple(given for given in as_list(name.get("given")) if isinstance(given, str)),
        birth_date=as_str(resource.get("birthDate")),
        gender=gender if gender in _GENDERS else "",
        reference=reference,
    )

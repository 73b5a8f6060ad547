"""Observation builders: one per CBC line as sent, one per derived count.

Mapping per the HL7 V2-to-FHIR IG (OBX → Observation): OBX-3 code, OBX-5/6
valueQuantity (value digit for digit as sent; UCUM ``system``/``code`` only when
the unit is a UCUM code), OBX-7 referenceRange (text always, low/high when it
parses), OBX-8 / rules → interpretation, OBX-11 → status (table 0085), OBX-14
→ effective, NTE → note.
"""

from __future__ import annotations

from functools import lru_cache

from leukofhir.emit.datatypes import (
    BASE,
    V3_INTERPRETATION,
    Json,
    RawDecimal,
    code,
    concept,
    conditional_update,
    decimal,
    identifier,
    source_identifier,
    text,
)
from leukofhir.errors import ErrorCode, Issue, warning
from leukofhir.model import (
    LOINC,
    UCUM,
    CbcValue,
    Coding,
    Interpretation,
    LabObservation,
    LabReport,
)
from leukofhir.rules.ranges import parse_range

LABORATORY = {
    "coding": [
        {
            "system": "http://terminology.hl7.org/CodeSystem/observation-category",
            "code": "laboratory",
            "display": "Laboratory",
        }
    ]
}

# HL7 table 0085 (OBX-11) → Observation.status
OBSERVATION_STATUS = {
    "F": "final",
    "C": "corrected",
    "A": "amended",
    "P": "preliminary",
    "R": "preliminary",
    "S": "preliminary",
    "U": "final",
    "I": "registered",
    "O": "registered",
    "D": "entered-in-error",
    "W": "entered-in-error",
    "X": "cancelled",
    "N": "cancelled",
}
UCUM_UNITS = frozenset(
    {
        "10*3/uL",
        "10*9/L",
        "10*6/uL",
        "10*12/L",
        "/uL",
        "{cells}/uL",
        "%",
        "g/dL",
        "g/L",
        "mmol/L",
        "fL",
        "pg",
        "mg/dL",
    }
)


OBSERVATION_STATUSES = frozenset(
    {
        "registered",
        "preliminary",
        "final",
        "amended",
        "corrected",
        "cancelled",
        "entered-in-error",
        "unknown",
    }
)


def observation_status(obx_status: str, where: LabObservation, issues: list[Issue]) -> str:
    """OBX-11 (table 0085) → Observation.status; a FHIR input's own status passes through."""
    if obx_status in OBSERVATION_STATUSES:
        return obx_status
    status = OBSERVATION_STATUS.get(obx_status.strip().upper())
    if status is None:
        sent = f"'{obx_status}'" if obx_status else "empty"
        issues.append(
            warning(
                ErrorCode.TABLE_VALUE_NOT_FOUND,
                f"OBX-11 result status is {sent}, not a table 0085 code;"
                " the Observation status is 'unknown'",
                where.location.at(11),
            )
        )
        return "unknown"
    return status


def line_key(obs: LabObservation) -> tuple[str, str]:
    """OBX-3 (primary code) and OBX-4: what tells the results of one order apart."""
    return (obs.codes[0].code if obs.codes else str(obs.location)), obs.sub_id


def identifier_for(
    report: LabReport, digest: str, obs: LabObservation, *, repeated: bool = False
) -> Json:
    """Filler order number + OBX-3 + OBX-4 (the IG's Observation identifier).  When two lines
    of one order share OBX-3 and OBX-4 (``repeated``), the OBX position is added, or a
    conditional create would merge two results into one.  A FHIR input Observation keeps
    its own identifier, else the one of its reference on the source server."""
    if obs.identifiers:
        return identifier(obs.identifiers[0], "observation")
    if (known := source_identifier(obs.reference)) is not None:
        return known
    primary, sub = line_key(obs)
    value = f"{order_key(report, digest)}/{primary}" + (f"/{sub}" if sub else "")
    if repeated:
        value += f"/obx{obs.location.sequence}"
    return {"system": f"{BASE}/sid/observation", "value": text(value)}


def order_key(report: LabReport, digest: str) -> str:
    """The report's order number and its namespace (filler, else placer, else the input)."""
    order = report.filler_order or report.placer_order
    return f"{order.value}@{order.system}" if order else f"{digest}/{report.location}"


def build_observation(
    obs: LabObservation,
    report: LabReport,
    *,
    digest: str,
    subject: Json | None,
    interpretation: Interpretation | None,
    issues: list[Issue],
    repeated: bool = False,
) -> tuple[Json, Json]:
    """The resource and its ``request`` for one CBC line as sent."""
    ident = identifier_for(report, digest, obs, repeated=repeated)
    resource: Json = {
        "resourceType": "Observation",
        "identifier": [ident],
        "status": observation_status(obs.status, obs, issues),
        "category": [LABORATORY],
        "code": _code(obs.codes, obs.code_text),
    }
    if subject:
        resource["subject"] = subject
    if effective := obs.effective or report.effective:
        resource["effectiveDateTime"] = effective
    if report.issued:
        resource["issued"] = report.issued
    _put_value(resource, obs)
    if interpretation:
        resource["interpretation"] = [_interpretation(interpretation)]
    if obs.notes:
        resource["note"] = [{"text": note} for n in obs.notes if (note := text(n))]
    if obs.reference_range and (ref_range := _reference_range(obs.reference_range, obs.unit)):
        resource["referenceRange"] = [ref_range]
    return resource, conditional_update("Observation", ident)


def build_derived(
    value: CbcValue,
    report: LabReport,
    *,
    digest: str,
    subject: Json | None,
    sources: list[Json],
    interpretation: Interpretation | None,
    status: str,
) -> tuple[Json, Json]:
    """A count computed from WBC × percent (or segmented + bands), with ``derivedFrom``."""
    ident = {
        "system": f"{BASE}/sid/derived-observation",
        "value": f"{order_key(report, digest)}/{value.loinc}",
    }
    resource: Json = {
        "resourceType": "Observation",
        "identifier": [ident],
        "status": status,
        "category": [LABORATORY],
        "code": {
            "coding": [{"system": LOINC, "code": value.loinc}],
            "text": f"{value.analyte.value.replace('-', ' ')} (derived by leukofhir)",
        },
    }
    if subject:
        resource["subject"] = subject
    if report.effective:
        resource["effectiveDateTime"] = report.effective
    if value.number is not None:
        resource["valueQuantity"] = _quantity(
            decimal(value.number), value.unit, value.unit, value.comparator
        )
    if interpretation:
        resource["interpretation"] = [_interpretation(interpretation)]
    resource["derivedFrom"] = sources
    return resource, conditional_update("Observation", ident)


@lru_cache(maxsize=4096)
def _code(codings: tuple[Coding, ...], label: str) -> Json:
    """Observation.code, LOINC first.  Cached: the dict is shared, never mutated."""
    return concept(tuple(sorted(codings, key=lambda c: c.system != LOINC)), label)


def _put_value(resource: Json, obs: LabObservation) -> None:
    value = obs.value
    if value is None:
        resource["dataAbsentReason"] = {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/data-absent-reason",
                    "code": "not-performed" if obs.status in {"X", "N"} else "unknown",
                }
            ]
        }
        return
    if value.number is None:
        if sent := text(value.text):
            resource["valueString"] = sent
        return
    sent_unit, ucum = _unit_fields(obs.unit)
    resource["valueQuantity"] = _quantity(decimal(value.number), sent_unit, ucum, value.comparator)


@lru_cache(maxsize=1024)
def _unit_fields(unit: Coding | None) -> tuple[str, str]:
    """Quantity.unit (as sent) and Quantity.code (only when the unit is a UCUM code)."""
    if unit is None:
        return "", ""
    ucum = code(unit.code) if unit.system == UCUM or unit.code in UCUM_UNITS else ""
    return text(unit.display or unit.code), ucum


def _quantity(number: int | float | RawDecimal, unit: str, ucum: str, comparator: str) -> Json:
    quantity: Json = {"value": number}
    if comparator:
        quantity["comparator"] = comparator
    if unit:
        quantity["unit"] = unit
    if ucum:
        quantity["system"] = UCUM
        quantity["code"] = ucum
    return quantity


def _interpretation(value: Interpretation) -> Json:
    return {"coding": [{"system": V3_INTERPRETATION, "code": value.code, "display": value.display}]}


@lru_cache(maxsize=1024)
def _reference_range(sent: str, unit: Coding | None) -> Json:
    """OBX-7 as a referenceRange: text always, low/high in the sent unit when it parses (the
    same parser the interpretation uses).  Cached; the dict is shared, never mutated."""
    out: Json = {}
    sent_unit, ucum = _unit_fields(unit)
    if (normal := parse_range(sent)) is not None:
        # FHIR low/high are inclusive; an exclusive one-sided bound ('<30') is still the
        # lab's limit, and the text below keeps exactly what the lab wrote
        if normal.low is not None:
            out["low"] = _quantity(decimal(normal.low), sent_unit, ucum, "")
        if normal.high is not None:
            out["high"] = _quantity(decimal(normal.high), sent_unit, ucum, "")
    if range_text := text(sent):
        out["text"] = range_text
    return out

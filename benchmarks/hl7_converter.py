"""The simple converter, a yardstick for ``leukofhir replay`` as a whole process.

    python benchmarks/hl7_converter.py PATH... > out.ndjson

What a small script with python-hl7 would do, and nothing more: every file under the paths
(sorted, recursively) is read, each HL7 v2 message in it parsed with ``hl7.parse``, and one
transaction Bundle per message built from plain dicts (a Patient, one Observation per OBX
with its value as a number when OBX-2 is NM, a DiagnosticReport; ``urn:uuid`` full URLs,
UUID v5 of MSH-10) and written as one NDJSON line with orjson.  No rules, no units, ranges,
interpretations, Flags, Provenance, conditional creates, lifecycle or validation: a lower
bound for "read + parse + map + serialise" in Python, not a competitor.
"""

from __future__ import annotations

import re
import sys
import uuid
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import hl7
import orjson

NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://example.org/hl7-converter")
LOINC = "http://loinc.org"
GENDER = {"F": "female", "M": "male", "O": "other", "U": "unknown"}
OBX_STATUS = {"F": "final", "C": "corrected", "P": "preliminary", "X": "cancelled"}
_MESSAGE_START = re.compile(r"(?=MSH\|)")


def _dtm(text: str) -> str | None:
    """HL7 DTM → FHIR dateTime, to the second, offset kept (a plain ``YYYYMMDD`` as a date)."""
    if len(text) < 8:
        return None
    date = f"{text[0:4]}-{text[4:6]}-{text[6:8]}"
    if len(text) < 12:
        return date
    digits, _, _ = text.partition(".")
    offset = ""
    for sign in "+-":
        if sign in digits:
            digits, zone = digits.split(sign, 1)
            offset = f"{sign}{zone[:2]}:{zone[2:4]}"
    seconds = digits[12:14] or "00"
    return f"{date}T{digits[8:10]}:{digits[10:12]}:{seconds}{offset or 'Z'}"


def convert(text: str) -> dict[str, Any]:
    message = hl7.parse(text)
    control_id = str(message.segment("MSH").extract_field(1, 10))

    def full_url(*parts: str) -> str:
        return f"urn:uuid:{uuid.uuid5(NAMESPACE, '|'.join((control_id, *parts)))}"

    entries: list[dict[str, Any]] = []
    patient_url = full_url("Patient")
    pid = message.segment("PID")
    patient: dict[str, Any] = {
        "resourceType": "Patient",
        "identifier": [{"value": pid.extract_field(1, 3, 1, 1)}],
        "name": [
            {"family": pid.extract_field(1, 5, 1, 1), "given": [pid.extract_field(1, 5, 1, 2)]}
        ],
    }
    if gender := GENDER.get(pid.extract_field(1, 8)):
        patient["gender"] = gender
    if len(born := pid.extract_field(1, 7)) >= 8:
        patient["birthDate"] = f"{born[0:4]}-{born[4:6]}-{born[6:8]}"
    entries.append(_entry(patient_url, patient))
    subject = {"reference": patient_url}

    obr = message.segment("OBR")
    effective = _dtm(obr.extract_field(1, 7))
    results = []
    for index, obx in enumerate(message.segments("OBX")):
        observation: dict[str, Any] = {
            "resourceType": "Observation",
            "status": OBX_STATUS.get(obx.extract_field(1, 11), "unknown"),
            "code": {
                "coding": [
                    {
                        "system": LOINC,
                        "code": obx.extract_field(1, 3, 1, 1),
                        "display": obx.extract_field(1, 3, 1, 2),
                    }
                ]
            },
            "subject": subject,
        }
        if when := _dtm(obx.extract_field(1, 14)) or effective:
            observation["effectiveDateTime"] = when
        raw = obx.extract_field(1, 5)
        try:
            number = Decimal(raw) if obx.extract_field(1, 2) == "NM" else None
        except InvalidOperation:
            number = None
        if number is not None:
            observation["valueQuantity"] = {
                "value": float(number),
                "unit": obx.extract_field(1, 6, 1, 1),
            }
        elif raw:
            observation["valueString"] = raw
        url = full_url("Observation", str(index))
        results.append({"reference": url})
        entries.append(_entry(url, observation))
    report = {
        "resourceType": "DiagnosticReport",
        "status": OBX_STATUS.get(obr.extract_field(1, 25), "unknown"),
        "code": {
            "coding": [{"system": LOINC, "code": obr.extract_field(1, 4, 1, 1)}],
            "text": obr.extract_field(1, 4, 1, 2),
        },
        "subject": subject,
        "effectiveDateTime": effective,
        "result": results,
    }
    entries.append(_entry(full_url("DiagnosticReport"), report))
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def _entry(url: str, resource: dict[str, Any]) -> dict[str, Any]:
    kind = resource["resourceType"]
    return {"fullUrl": url, "resource": resource, "request": {"method": "POST", "url": kind}}


def files(paths: list[str]) -> list[Path]:
    found: list[Path] = []
    for name in paths:
        path = Path(name)
        found.extend(sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path])
    return found


def main(argv: list[str]) -> int:
    out = sys.stdout.buffer
    for path in files(argv):
        text = path.read_bytes().decode("utf-8-sig").replace("\r\n", "\r").replace("\n", "\r")
        for one in _MESSAGE_START.split(text):
            if one.strip():
                out.write(orjson.dumps(convert(one.strip())) + b"\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""The straightforward pipeline, as a yardstick for leukofhir's own throughput.

``baseline_pipeline(message)`` does what a first implementation with the usual libraries
would do, and nothing more:

1. decode the bytes (UTF-8, BOM dropped) and turn ``\\n`` / ``\\r\\n`` into ``\\r``;
2. parse with hl7apy: ``parse_message(text, validation_level=TOLERANT, find_groups=True)``;
3. walk the parsed tree and take PID, OBR and every OBX whose OBX-3 is coded ``LN``
   (LOINC); values and units are read with ``to_er7()`` and split on ``^`` (escape
   sequences such as ``\\S\\`` are left as sent);
4. build fhir.resources R4B models: one Patient, one Observation per LOINC OBX (NM values
   as ``valueQuantity`` with the unit as sent, anything else as ``valueString``), one
   DiagnosticReport that references them, all POSTed in a ``transaction`` Bundle with
   ``urn:uuid`` full URLs (UUID v5 of MSH-10, so the output is reproducible);
5. ``bundle.model_dump_json()``.

It runs no rules, no unit normalisation, no reference ranges, interpretation, Flags,
Provenance or conditional creates, and it does not split batches: the number it gives is
a lower bound for "parse + map + serialise" with these libraries, not a full competitor.

    python benchmarks/baseline.py [--count N] [--seed S]   # times it on generated messages
    python benchmarks/baseline.py PATH... > out.ndjson     # converts files (one Bundle a line)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import uuid
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from fhir.resources.R4B.bundle import Bundle, BundleEntry, BundleEntryRequest
from fhir.resources.R4B.codeableconcept import CodeableConcept
from fhir.resources.R4B.coding import Coding
from fhir.resources.R4B.diagnosticreport import DiagnosticReport
from fhir.resources.R4B.humanname import HumanName
from fhir.resources.R4B.identifier import Identifier
from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.patient import Patient
from fhir.resources.R4B.quantity import Quantity
from fhir.resources.R4B.reference import Reference
from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.parser import parse_message

NAMESPACE = uuid.UUID("6f1c2f0e-8a57-4d0f-9f55-3e7f4f0c2b11")
OBX_STATUS = {"F": "final", "C": "corrected", "A": "amended", "P": "preliminary"}
OBR_STATUS = {"F": "final", "C": "corrected", "P": "preliminary", "R": "partial", "A": "partial"}
GENDER = {"F": "female", "M": "male", "O": "other", "U": "unknown"}


def _segments(element: Any) -> list[Any]:
    """All segments of an hl7apy message or group, depth first, in tree order."""
    found: list[Any] = []
    for child in element.children:
        if child.classname == "Segment":
            found.append(child)
        else:
            found.extend(_segments(child))
    return found


def _field(segment: Any, number: int) -> list[str]:
    """Components of one field (first repetition), via the ER7 text of the field."""
    name = f"{segment.name.lower()}_{number}"
    try:
        text: str = getattr(segment, name).to_er7()
    except Exception:  # absent or unknown field
        return [""]
    return text.split("~")[0].split("^")


def _dtm(text: str) -> datetime | None:
    """HL7 DTM with seconds and offset -> aware datetime; anything shorter is dropped."""
    try:
        return datetime.strptime(text[:19], "%Y%m%d%H%M%S%z")
    except ValueError:
        return None


def baseline_pipeline(message: bytes) -> bytes:
    """One HL7 v2 ORU message in, one FHIR R4B transaction Bundle (JSON bytes) out."""
    text = message.decode("utf-8-sig").replace("\r\n", "\r").replace("\n", "\r")
    parsed = parse_message(text, validation_level=VALIDATION_LEVEL.TOLERANT, find_groups=True)
    segments = _segments(parsed)
    msh = next(s for s in segments if s.name == "MSH")
    control_id = _field(msh, 10)[0]

    def full_url(*parts: str) -> str:
        return f"urn:uuid:{uuid.uuid5(NAMESPACE, '|'.join((control_id, *parts)))}"

    entries: list[BundleEntry] = []
    patient_url = full_url("Patient")
    pid = next((s for s in segments if s.name == "PID"), None)
    if pid is not None:
        cx = _field(pid, 3)
        name = _field(pid, 5)
        patient = Patient(
            identifier=[Identifier(value=cx[0], system=cx[3] if len(cx) > 3 else None)],
            name=[HumanName(family=name[0] or None, given=[g for g in name[1:3] if g] or None)],
            gender=GENDER.get(_field(pid, 8)[0]),
        )
        dob = _field(pid, 7)[0]
        if len(dob) >= 8:
            patient.birthDate = date(int(dob[0:4]), int(dob[4:6]), int(dob[6:8]))
        entries.append(
            BundleEntry(
                fullUrl=patient_url,
                resource=patient,
                request=BundleEntryRequest(method="POST", url="Patient"),
            )
        )
    subject = Reference(reference=patient_url)

    obr = next((s for s in segments if s.name == "OBR"), None)
    obr_code = _field(obr, 4) if obr is not None else [""]
    effective = _dtm(_field(obr, 7)[0]) if obr is not None else None
    results: list[Reference] = []
    for index, obx in enumerate(s for s in segments if s.name == "OBX"):
        code = _field(obx, 3)
        if len(code) < 3 or code[2] != "LN":
            continue
        observation = Observation(
            status=OBX_STATUS.get(_field(obx, 11)[0], "unknown"),
            code=CodeableConcept(
                coding=[Coding(system="http://loinc.org", code=code[0], display=code[1] or None)]
            ),
            subject=subject,
            effectiveDateTime=_dtm(_field(obx, 14)[0]) or effective,
        )
        raw_value = _field(obx, 5)[0]
        unit = _field(obx, 6)[0]
        try:
            number = Decimal(raw_value) if _field(obx, 2)[0] == "NM" else None
        except InvalidOperation:
            number = None
        if number is not None:
            observation.valueQuantity = Quantity(value=number, unit=unit or None)
        elif raw_value:
            observation.valueString = raw_value
        url = full_url("Observation", str(index))
        results.append(Reference(reference=url))
        entries.append(
            BundleEntry(
                fullUrl=url,
                resource=observation,
                request=BundleEntryRequest(method="POST", url="Observation"),
            )
        )

    report = DiagnosticReport(
        status=OBR_STATUS.get(_field(obr, 25)[0], "unknown") if obr is not None else "unknown",
        code=CodeableConcept(
            coding=[Coding(system="http://loinc.org", code=obr_code[0], display=obr_code[1])]
            if len(obr_code) > 2 and obr_code[2] == "LN"
            else None,
            text=obr_code[1] if len(obr_code) > 1 else "CBC",
        ),
        subject=subject,
        effectiveDateTime=effective,
        result=results or None,
    )
    entries.append(
        BundleEntry(
            fullUrl=full_url("DiagnosticReport"),
            resource=report,
            request=BundleEntryRequest(method="POST", url="DiagnosticReport"),
        )
    )
    bundle = Bundle(type="transaction", entry=entries)
    return bundle.model_dump_json().encode("utf-8")


def _time(messages: list[bytes]) -> dict[str, float]:
    first = time.perf_counter()
    baseline_pipeline(messages[0])
    cold = time.perf_counter() - first
    per_call: list[float] = []
    for message in messages:
        start = time.perf_counter()
        baseline_pipeline(message)
        per_call.append(time.perf_counter() - start)
    return {
        "cold_ms": cold * 1000,
        "median_ms": statistics.median(per_call) * 1000,
        "mean_ms": statistics.fmean(per_call) * 1000,
        "messages_per_s": len(per_call) / sum(per_call),
    }


def convert_files(paths: list[Path]) -> int:
    """Every file (sorted, folders recursively; one message a file) to a line on stdout."""
    out = sys.stdout.buffer
    for path in paths:
        for file in sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]:
            out.write(baseline_pipeline(file.read_bytes()) + b"\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Time the baseline pipeline.")
    parser.add_argument("--count", type=int, default=200, help="messages to time (default 200)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "paths", nargs="*", type=Path, help="convert these files (folders: recursively) instead"
    )
    args = parser.parse_args(argv)
    if args.paths:
        return convert_files(args.paths)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from generate import generate_messages  # sibling script, not a package

    messages = generate_messages(max(args.count, 1), args.seed)
    result = _time(messages)
    print(
        f"baseline (hl7apy TOLERANT + find_groups, fhir.resources R4B, model_dump_json): "
        f"first call {result['cold_ms']:.1f} ms, then median {result['median_ms']:.2f} ms, "
        f"mean {result['mean_ms']:.2f} ms per 19-OBX message "
        f"({result['messages_per_s']:.0f} messages/s, {len(messages)} messages, one process)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Patient from PID: identifiers (PID-3), name (PID-5), birth date (PID-7), gender (PID-8)."""

from __future__ import annotations

from leukofhir.emit.datatypes import Json, identifier, if_none_exist, text
from leukofhir.model import Patient


def build_patient(patient: Patient) -> tuple[Json, Json]:
    """The resource and its ``request`` (conditional create on the first PID-3 identifier)."""
    resource: Json = {"resourceType": "Patient"}
    identifiers = [identifier(i, "patient") for i in patient.identifiers if text(i.value)]
    if identifiers:
        resource["identifier"] = identifiers
    name: Json = {}
    if family := text(patient.family):
        name["family"] = family
    if given := [g for g in (text(n) for n in patient.given) if g]:
        name["given"] = given
    if name:
        resource["name"] = [name]
    if patient.gender:
        resource["gender"] = patient.gender
    if patient.birth_date:
        resource["birthDate"] = patient.birth_date
    request: Json = {"method": "POST", "url": "Patient"}
    if identifiers:
        request["ifNoneExist"] = if_none_exist(identifiers[0])
    return resource, request


def patient_key(patient: Patient | None, digest: str) -> str:
    """What stays the same for one patient across messages: the first identifier."""
    if patient and patient.identifiers:
        first = patient.identifiers[0]
        return f"{first.system}|{first.value}"
    return f"message|{digest}"

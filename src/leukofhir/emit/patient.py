"""Patient from PID: identifiers (PID-3), name (PID-5), birth date (PID-7), gender (PID-8)."""

from __future__ import annotations

from leukofhir.emit.datatypes import (
    BASE,
    Json,
    identifier,
    if_none_exist,
    source_identifier,
    text,
    uuid_value,
)
from leukofhir.model import Patient

UNIDENTIFIED = f"{BASE}/sid/unidentified-patient"


def build_patient(patient: Patient, digest: str) -> tuple[Json, Json]:
    """The resource and its ``request``: a conditional create on the first PID-3 (or
    Patient.identifier) identifier.  A FHIR patient known only by its reference on the
    source server is identified by that reference; one sent without any identifier gets
    one of the message (``digest``), so that a re-delivery finds it instead of creating it
    again, and two messages are never taken for the same unidentified patient."""
    resource: Json = {"resourceType": "Patient"}
    identifiers = [identifier(i, "patient") for i in patient.identifiers if text(i.value)]
    if not identifiers:
        known = source_identifier(patient.reference)
        identifiers = [known or {"system": UNIDENTIFIED, "value": uuid_value("Patient", digest)}]
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
    request = {"method": "POST", "url": "Patient", "ifNoneExist": if_none_exist(identifiers[0])}
    return resource, request


def patient_key(patient: Patient, digest: str) -> str:
    """What stays the same for one patient across messages: the first identifier (else
    the input's own reference to it, else the message: a patient without identifier is
    a patient of one message)."""
    if patient.identifiers:
        first = patient.identifiers[0]
        return f"{first.system}|{first.value}"
    if patient.reference and not patient.reference.startswith(("urn:", "#")):
        return f"reference|{patient.reference}"
    return f"message|{digest}"

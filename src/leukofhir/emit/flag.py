"""Flag: one per finding, with priority, evidence and CTCAE grade extensions."""

from __future__ import annotations

from leukofhir.emit.datatypes import BASE, DEVICE, Json, coding, if_none_exist, text, uuid_value
from leukofhir.model import Finding

FLAG_PRIORITY = "http://hl7.org/fhir/StructureDefinition/flag-priority"
FLAG_DETAIL = "http://hl7.org/fhir/StructureDefinition/flag-detail"
PRIORITY_SYSTEM = "http://hl7.org/fhir/flag-priority-code"
CTCAE_GRADE = f"{BASE}/StructureDefinition/ctcae-grade"
PRIORITY_DISPLAY = {
    "PN": "No alarm",
    "PL": "Low priority",
    "PM": "Medium priority",
    "PH": "High priority",
}
LAB_CATEGORY = {
    "coding": [
        {
            "system": "http://terminology.hl7.org/CodeSystem/flag-category",
            "code": "lab",
            "display": "Lab",
        }
    ]
}


def flag_identifier(patient_key: str, finding: Finding, report_key: str) -> Json:
    """Derived from (patient, finding, report): a re-delivered report finds its Flag."""
    return {
        "system": f"{BASE}/sid/flag",
        "value": uuid_value("Flag", patient_key, finding.rule_id, report_key),
    }


def build_flag(
    finding: Finding,
    *,
    identifier: Json,
    subject: Json | None,
    start: str,
    evidence: list[Json],
) -> tuple[Json, Json]:
    extensions: list[Json] = []
    if finding.priority:
        extensions.append(
            {
                "url": FLAG_PRIORITY,
                "valueCodeableConcept": {
                    "coding": [
                        {
                            "system": PRIORITY_SYSTEM,
                            "code": finding.priority,
                            "display": PRIORITY_DISPLAY.get(finding.priority, finding.priority),
                        }
                    ]
                },
            }
        )
    extensions.extend({"url": FLAG_DETAIL, "valueReference": ref} for ref in evidence)
    if finding.grade is not None:
        extensions.append({"url": CTCAE_GRADE, "valueInteger": finding.grade})
    resource: Json = {"resourceType": "Flag"}
    if extensions:
        resource["extension"] = extensions
    resource |= {
        "identifier": [identifier],
        "status": "active",
        "category": [LAB_CATEGORY],
        "code": {"coding": [coding(finding.code)], "text": text(finding.text)},
    }
    if subject:
        resource["subject"] = subject
    if start:
        resource["period"] = {"start": start}
    resource["author"] = DEVICE
    return resource, {"method": "POST", "url": "Flag", "ifNoneExist": if_none_exist(identifier)}

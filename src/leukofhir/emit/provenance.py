"""Provenance: what leukofhir wrote, from which message, under which rule set."""

from __future__ import annotations

from urllib.parse import quote

from leukofhir.emit.datatypes import BASE, DEVICE, Json, text
from leukofhir.model import LabMessage

ASSEMBLER = {
    "coding": [
        {
            "system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
            "code": "assembler",
            "display": "Assembler",
        }
    ]
}


def rule_set_uri(rule_set_id: str, version: str) -> str:
    return f"{BASE}/rules/{rule_set_id}/{version}"


def build_provenance(
    message: LabMessage, *, targets: list[Json], recorded: str, policy: str
) -> tuple[Json, Json]:
    """POSTed unconditionally: a second delivery is a second, truthful processing record."""
    source = message.control_id or message.digest
    kind = (
        f"HL7 v2 {message.message_type}^{message.trigger} message"
        if message.source_format == "hl7v2"
        else "FHIR input"
    )
    facility = text(message.sending_facility) or "unknown-facility"
    resource: Json = {
        "resourceType": "Provenance",
        "target": targets,
        "recorded": recorded,
        "policy": [policy],
        "agent": [{"type": ASSEMBLER, "who": DEVICE}],
        "entity": [
            {
                "role": "source",
                "what": {
                    "identifier": {
                        "system": f"{BASE}/sid/message/{quote(facility, safe='')}",
                        "value": text(source),
                    },
                    "display": f"{kind}, control id {text(source)}",
                },
            }
        ],
    }
    return resource, {"method": "POST", "url": "Provenance"}

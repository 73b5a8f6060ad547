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


DOCUMENT_TAG = f"{BASE}/sid/document"


def source_entity(message: LabMessage) -> Json:
    """The message the output was made from (``Provenance.entity``, role ``source``)."""
    source = message.control_id or message.digest
    kind = (
        f"HL7 v2 {message.message_type}^{message.trigger} message"
        if message.source_format == "hl7v2"
        else "FHIR input"
    )
    facility = text(message.sending_facility) or "unknown-facility"
    return {
        "role": "source",
        "what": {
            "identifier": {
                "system": f"{BASE}/sid/message/{quote(facility, safe='')}",
                "value": text(source),
            },
            "display": f"{kind}, control id {text(source)}",
        },
    }


def build_provenance(
    document: str, source: Json, *, targets: list[Json], recorded: str, policy: str
) -> tuple[Json, Json]:
    """Created once per output document: ``meta.tag`` carries the document's id and the
    ``request`` is a conditional create on that tag, so that a retry or a re-delivery of
    the same document never adds a second Provenance (R4 Provenance has no identifier)."""
    resource: Json = {
        "resourceType": "Provenance",
        "meta": {"tag": [{"system": DOCUMENT_TAG, "code": document}]},
        "target": targets,
        "recorded": recorded,
        "policy": [policy],
        "agent": [{"type": ASSEMBLER, "who": DEVICE}],
        "entity": [source],
    }
    return resource, {
        "method": "POST",
        "url": "Provenance",
        "ifNoneExist": f"_tag={DOCUMENT_TAG}%7C{document}",
    }

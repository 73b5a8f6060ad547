"""An Observation a newer version of its report no longer holds (snapshot semantics,
LIFECYCLE.md): written ``entered-in-error`` with a note, never left ``preliminary`` in
silence, by conditional update on its identifier."""

from __future__ import annotations

from leukofhir.emit.datatypes import Json, conditional_update
from leukofhir.lifecycle.facts import ReportFacts, Result

__all__ = ["withdrawn_observation"]


def withdrawn_observation(
    result: Result, subject: Json | None, newer: ReportFacts | None
) -> tuple[Json, Json]:
    system, _, value = result.identifier.partition("|")
    ident = {"system": system, "value": value}
    code_system, _, code = result.code.partition("|")
    coding: Json = {"system": code_system, "code": code} if code_system else {"code": code}
    version = newer.version.label if newer is not None else "a newer version"
    resource: Json = {
        "resourceType": "Observation",
        "identifier": [ident],
        "status": "entered-in-error",
        "code": {"coding": [coding]},
    }
    if subject:
        resource["subject"] = subject
    resource["note"] = [
        {
            "text": f"Withdrawn by leukofhir: the report's newer version ({version}) no longer"
            f" holds this result (it was {result.status})."
        }
    ]
    return resource, conditional_update("Observation", ident)

"""OperationOutcome from :class:`leukofhir.errors.Issue` records."""

from __future__ import annotations

from collections.abc import Iterable

from leukofhir.emit.datatypes import Json, text, uuid_value
from leukofhir.errors import Issue

V2_0357 = "http://terminology.hl7.org/CodeSystem/v2-0357"


def build_operation_outcome(issues: Iterable[Issue], *, seed: str, context: str = "") -> Json:
    """One OperationOutcome; ``context`` (message number, control id; never patient data)
    goes into each issue's ``diagnostics`` so that a line of NDJSON says where it belongs."""
    out: list[Json] = []
    for issue in issues:
        entry: Json = {
            "severity": issue.severity.value,
            "code": issue.issue_type,
            "details": {
                "coding": [
                    {"system": V2_0357, "code": issue.code.value, "display": issue.code.text}
                ],
                "text": text(issue.message) or issue.code.text,
            },
        }
        if context:
            entry["diagnostics"] = context
        location = issue.location
        if location.expression:
            entry["expression"] = [location.expression]
        if location.line is not None:  # text that did not parse: where, as the validator says it
            entry["location"] = [location.position]
        elif not location.expression and (where := str(location)):
            entry["location"] = [where]
        out.append(entry)
    return {
        "resourceType": "OperationOutcome",
        "id": uuid_value("OperationOutcome", seed),
        "issue": out,
    }

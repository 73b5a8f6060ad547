"""FHIR input and the clinical context: Patient.birthDate gives the age band, the ordering
provider is the requester of the ServiceRequest the DiagnosticReport is basedOn, and a
patient's own lower ANC limit may come as an Observation coded as the rule file names."""

from __future__ import annotations

import json
from typing import Any

from leukofhir.pipeline import process
from tests.conftest import make_context

LIMIT = "https://leukofhir.dev/fhir/CodeSystem/clinical-context"


def urn(n: int) -> str:
    return f"urn:uuid:7a0c2b1e-0000-4000-8000-{n:012d}"


def observation(n: int, code: str, value: str, system: str = "http://loinc.org") -> dict[str, Any]:
    return {
        "fullUrl": urn(n),
        "resource": {
            "resourceType": "Observation",
            "status": "final",
            "code": {"coding": [{"system": system, "code": code}]},
            "subject": {"reference": urn(1)},
            "effectiveDateTime": "2025-03-01T00:30:00+01:00",
            "valueQuantity": {
                "value": float(value),
                "unit": "10*9/L",
                "system": "http://unitsofmeasure.org",
                "code": "10*9/L",
            },
        },
    }


def bundle(birth: str, anc: str, *, limit: str | None = None) -> bytes:
    members = [observation(10, "751-8", anc)]
    if limit is not None:
        members.append(observation(11, "anc-lower-limit", limit, LIMIT))
    entries = [
        {
            "fullUrl": urn(1),
            "resource": {
                "resourceType": "Patient",
                "identifier": [{"system": "urn:oid:2.16.840.1.113883.19.5", "value": "K-77"}],
                "birthDate": birth,
            },
        },
        {
            "fullUrl": urn(3),
            "resource": {
                "resourceType": "ServiceRequest",
                "status": "active",
                "intent": "order",
                "subject": {"reference": urn(1)},
                "requester": {"reference": urn(4)},
            },
        },
        {
            "fullUrl": urn(4),
            "resource": {
                "resourceType": "Practitioner",
                "identifier": [{"system": "http://hl7.org/fhir/sid/us-npi", "value": "1928374655"}],
                "name": [{"family": "Sato", "given": ["Yui"]}],
            },
        },
        {
            "fullUrl": urn(2),
            "resource": {
                "resourceType": "DiagnosticReport",
                "identifier": [{"system": "urn:oid:2.16.840.1.113883.19.5.7", "value": "PED-1"}],
                "basedOn": [{"reference": urn(3)}],
                "status": "final",
                "code": {"coding": [{"system": "http://loinc.org", "code": "58410-2"}]},
                "subject": {"reference": urn(1)},
                "effectiveDateTime": "2025-03-01T00:30:00+01:00",
                "result": [{"reference": m["fullUrl"]} for m in members],
            },
        },
        *members,
    ]
    return json.dumps({"resourceType": "Bundle", "type": "collection", "entry": entries}).encode()


def test_birth_date_band_and_ordering_provider_from_fhir() -> None:
    # born 29 Feb 2024, collected 1 March 2025 00:30 +01:00: one year old (local date)
    (outcome,) = process(bundle("2024-02-29", "1.2"), make_context())
    (report,) = outcome.reports
    assert report.evaluation.profile.endswith("age band 1-2 years")
    assert {f.rule_id for f in report.evaluation.findings} == {"neutropenia"}
    provider = outcome.message.reports[0].ordering_provider  # type: ignore[union-attr]
    assert provider is not None
    assert provider.name == "Yui Sato"
    assert provider.identifier is not None
    assert provider.identifier.value == "1928374655"
    assert not any("age is not known" in i.message for i in outcome.issues)


def test_a_patient_limit_observation_in_fhir() -> None:
    (outcome,) = process(bundle("1980-01-01", "1.2", limit="1.0"), make_context())
    (report,) = outcome.reports
    assert report.evaluation.findings == ()
    assert "own lower ANC limit 1.0" in report.evaluation.notes[0]
    assert not any("are no CBC field" in i.message for i in outcome.issues)  # it is used

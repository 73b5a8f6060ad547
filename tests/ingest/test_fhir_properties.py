"""Properties of the FHIR reader: any JSON gives units (never an exception other than the
project's own), and reordering a Bundle's entries does not change its reports."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from leukofhir.errors import LeukofhirError
from leukofhir.ingest.fhir import FhirUnit, read_fhir
from tests.ingest.test_fhir import bundle, diagnostic_report, observation

KEYS = [
    "resourceType",
    "type",
    "entry",
    "resource",
    "fullUrl",
    "request",
    "method",
    "id",
    "result",
    "hasMember",
    "reference",
    "contained",
    "subject",
    "specimen",
    "status",
    "code",
    "coding",
    "system",
    "valueQuantity",
    "value",
    "unit",
    "comparator",
    "valueString",
    "referenceRange",
    "low",
    "high",
    "text",
    "interpretation",
    "effectiveDateTime",
    "effectivePeriod",
    "start",
    "issued",
    "identifier",
    "gender",
    "dataAbsentReason",
    "triggeredBy",
    "note",
]
WORDS = [
    "Observation",
    "DiagnosticReport",
    "Bundle",
    "Patient",
    "collection",
    "history",
    "http://loinc.org",
    "6690-2",
    "751-8",
    "10*9/L",
    "http://unitsofmeasure.org",
    "final",
    "#a",
    "Observation/a",
    "urn:uuid:a",
    "https://x.org/fhir/Observation/a",
    "a",
    "DELETE",
    "<",
]
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**20), max_value=10**20)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from(WORDS)
    | st.text(max_size=8)
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=5), children, max_size=6)
    ),
    max_leaves=40,
)


def read_all(data: bytes) -> list[FhirUnit]:
    try:
        return list(read_fhir(data, "UTC"))
    except LeukofhirError:
        return []


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(json_values)
def test_any_json_gives_units(value: Any) -> None:
    found = read_all(json.dumps(value).encode())
    assert found
    for unit in found:
        assert (unit.message is None) != (unit.error is None)


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.lists(json_values, min_size=1, max_size=5))
def test_any_ndjson_gives_units(values: list[Any]) -> None:
    data = b"\n".join(json.dumps(value).encode() for value in values)
    assert read_all(data)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64))
def test_any_bytes_give_units(data: bytes) -> None:
    assert read_all(data)


def _cbc_bundle_entries() -> list[tuple[str, dict[str, Any]]]:
    """Two reports by DiagnosticReport (one via a panel), a panel alone, and loose results."""
    entries: list[tuple[str, dict[str, Any]]] = [
        ("urn:uuid:r1", diagnostic_report("r1", ["urn:uuid:w1", "Observation/n1"])),
        ("urn:uuid:r2", diagnostic_report("r2", ["Observation/panel2"])),
        (
            "",
            observation(
                "panel2",
                "58410-2",
                None,
                hasMember=[{"reference": "Observation/w2"}, {"reference": "Observation/l2"}],
            ),
        ),
        ("", observation("panel3", "58410-2", None, hasMember=[{"reference": "Observation/w3"}])),
        ("urn:uuid:w1", observation("w1")),
        ("", observation("n1", "751-8", 1.0)),
        ("", observation("w2", value=2.2)),
        ("", observation("l2", "731-0", 0.4)),
        ("", observation("w3", value=3.3)),
        ("", {"resourceType": "Patient", "id": "p1", "gender": "female"}),
    ]
    for subject, effective in (("Patient/p1", "2025-01-01"), ("Patient/p2", "2025-01-02")):
        for rid, loinc in (("w", "6690-2"), ("n", "751-8")):
            entries.append(
                (
                    "",
                    observation(
                        f"{rid}-{subject[-2:]}", loinc, subject=subject, effective=effective
                    ),
                )
            )
    return entries


def _reports(entries: list[tuple[str, dict[str, Any]]]) -> set[tuple[str, frozenset[str], str]]:
    found = set()
    for unit in read_fhir(json.dumps(bundle("collection", entries)).encode(), "UTC"):
        assert unit.message is not None
        (lab_report,) = unit.message.reports
        members = frozenset(obs.reference for obs in lab_report.observations)
        found.add(
            (
                lab_report.reference or lab_report.codes[0].code if lab_report.codes else "",
                members,
                unit.message.digest,
            )
        )
    return found


ENTRIES = _cbc_bundle_entries()
EXPECTED = _reports(ENTRIES)


@settings(max_examples=60, deadline=None)
@given(st.permutations(ENTRIES))
def test_shuffling_entries_keeps_the_reports(entries: list[tuple[str, dict[str, Any]]]) -> None:
    assert _reports(entries) == EXPECTED


def test_the_shuffled_bundle_has_every_form_of_report() -> None:
    sizes = sorted(len(members) for _, members, _ in EXPECTED)
    assert sizes == [1, 2, 2, 2, 2]

"""FHIR input → FhirUnit: every form (resource, Bundle types, references, NDJSON), values,
grouping, validation, errors.  The builders at the top make invented resources."""

from __future__ import annotations

import json
import time
import tracemalloc
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from leukofhir.errors import ErrorCode, Severity
from leukofhir.ingest.fhir import FhirUnit, looks_like_fhir, read_fhir, read_fhir_lines
from leukofhir.ingest.fhir_index import make_entry
from leukofhir.ingest.fhir_ndjson import NdjsonGrouper
from leukofhir.model import UCUM, LabMessage, LabReport
from leukofhir.rules.ranges import parse_range

LOINC = "http://loinc.org"
WHEN = "2025-03-04T08:15:00+01:00"
ZONE = "Europe/Zurich"


# --- builders ---------------------------------------------------------------------------------


def observation(
    rid: str,
    loinc: str = "6690-2",
    value: Any = 5.1,
    unit: str = "10*9/L",
    *,
    subject: str = "Patient/p1",
    effective: str = WHEN,
    **extra: Any,
) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "id": rid,
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": loinc}]},
        "subject": {"reference": subject},
        "effectiveDateTime": effective,
    }
    if value is not None:
        resource["valueQuantity"] = {"value": value, "unit": unit, "system": UCUM, "code": unit}
    resource.update(extra)
    return resource


def diagnostic_report(rid: str, results: list[str], **extra: Any) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "DiagnosticReport",
        "id": rid,
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "58410-2"}]},
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": WHEN,
        "result": [{"reference": ref} for ref in results],
    }
    resource.update(extra)
    return resource


def bundle(kind: str, entries: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": kind,
        "entry": [
            {"fullUrl": url, "resource": resource} if url else {"resource": resource}
            for url, resource in entries
        ],
    }


def dumps(value: Any) -> bytes:
    return json.dumps(value).encode()


def ndjson(resources: list[dict[str, Any]]) -> bytes:
    return b"\n".join(json.dumps(resource).encode() for resource in resources) + b"\n"


def units(data: bytes) -> list[FhirUnit]:
    return list(read_fhir(data, ZONE))


def messages(data: bytes) -> list[LabMessage]:
    found = units(data)
    assert all(unit.error is None for unit in found), [unit.error for unit in found]
    return [unit.message for unit in found if unit.message is not None]


def only_report(data: bytes) -> LabReport:
    (message,) = messages(data)
    (lab_report,) = message.reports
    return lab_report


def codes(lab_report: LabReport) -> list[str]:
    return [obs.codes[0].code for obs in lab_report.observations]


CBC = [
    ("w", "6690-2", 2.9, "10*9/L"),
    ("n", "751-8", 1.2, "10*9/L"),
    ("l", "731-0", 0.9, "10*9/L"),
]


def cbc_observations(prefix: str = "", subject: str = "Patient/p1") -> list[dict[str, Any]]:
    return [
        observation(prefix + rid, loinc, value, unit, subject=subject)
        for rid, loinc, value, unit in CBC
    ]


# --- detection and errors ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b'{"resourceType": "Observation"}', True),
        (b"\xef\xbb\xbf \n\t[1]", True),
        (b"MSH|^~\\&|", False),
        (b"", False),
        (b"\x0bMSH|", False),
    ],
)
def test_looks_like_fhir(data: bytes, expected: bool) -> None:
    assert looks_like_fhir(data) is expected


@pytest.mark.parametrize(
    ("data", "where", "words"),
    [
        (b'{"resourceType": "Observation",', "Line[1] Col[32]", "not JSON"),
        (b'{\n  "resourceType": "Observation",\n  "id": }', "Line[3] Col[9]", "not JSON"),
        (b"[1, 2]", "$this", "JSON array"),
        (b'{"id": "x"}', "$this", "resourceType"),
        (b'{"resourceType": "Patient", "id": "p"}', "Patient", "not a lab result"),
        (b"  \n ", "", "empty"),
        (b'{"resourceType": "Observation", "value": NaN}', "Line[1] Col[42]", "not JSON"),
        (b'\xff{"resourceType": 1}', "Line[1] Col[1]", "not JSON"),
        (b'{"a": "\xff"}', "Line[1] Col[8]", "not UTF-8"),
        (b"[" * 101 + b"]" * 101, "Line[1] Col[101]", "deeper than 100"),
        (
            b'{"a": "[[",\n"b":' + b"[" * 200 + b"]" * 200 + b"}",
            "Line[2] Col[104]",
            "deeper than 100",
        ),
    ],
)
def test_what_is_not_a_lab_result_is_one_located_error(data: bytes, where: str, words: str) -> None:
    (unit,) = units(data)
    assert unit.message is None
    assert unit.error is not None
    assert unit.error.severity is Severity.ERROR
    assert str(unit.error.location) == where
    assert words in unit.error.message


# --- one resource -----------------------------------------------------------------------------


def test_single_observation_keeps_the_decimal_text_exactly() -> None:
    data = (
        b'{"resourceType":"Observation","id":"w1","status":"final",'
        b'"identifier":[{"system":"urn:lab","value":"W-1"}],'
        b'"code":{"coding":[{"system":"http://loinc.org","code":"6690-2","display":"WBC"}]},'
        b'"subject":{"reference":"Patient/p1"},"effectiveDateTime":"2025-03-04T08:15:00+01:00",'
        b'"issued":"2025-03-04T09:00:00+01:00",'
        b'"valueQuantity":{"value":5.100,"unit":"10*9/L","system":"http://unitsofmeasure.org",'
        b'"code":"10*9/L"}}'
    )
    (message,) = messages(data)
    assert message.source_format == "fhir"
    assert len(message.digest) == 64
    assert message.patient is not None
    assert message.patient.reference == "Patient/p1"
    (lab_report,) = message.reports
    assert lab_report.issued == "2025-03-04T09:00:00+01:00"
    assert lab_report.effective == WHEN
    (obs,) = lab_report.observations
    assert obs.value is not None
    assert obs.value.number == Decimal("5.100")
    assert str(obs.value.number) == "5.100"
    assert obs.value.text == "5.100"
    assert obs.unit is not None
    assert (obs.unit.code, obs.unit.system) == ("10*9/L", UCUM)
    assert str(obs.location) == "Observation"
    assert obs.reference == "Observation/w1"
    assert obs.identifiers[0].value == "W-1"
    assert obs.identifier == "W-1"
    assert obs.status == "final"
    assert obs.effective == WHEN


def test_diagnostic_report_with_contained_results() -> None:
    contained = [dict(resource) for resource in cbc_observations()]
    for resource in contained:
        resource.pop("subject")
    resource = diagnostic_report(
        "r1", ["#w", "#n", "#l"], contained=contained, issued="2025-03-04T10:00:00+01:00"
    )
    lab_report = only_report(dumps(resource))
    assert codes(lab_report) == ["6690-2", "751-8", "731-0"]
    assert lab_report.reference == "DiagnosticReport/r1"
    assert lab_report.status == "final"
    assert lab_report.codes[0].code == "58410-2"
    assert lab_report.issued == "2025-03-04T10:00:00+01:00"
    assert str(lab_report.observations[0].location) == "DiagnosticReport.contained[0]"


# --- Bundles and references -------------------------------------------------------------------


def test_collection_with_relative_references() -> None:
    entries: list[tuple[str, dict[str, Any]]] = [
        ("", diagnostic_report("r1", ["Observation/w", "Observation/n", "Observation/l"]))
    ]
    entries += [("", resource) for resource in cbc_observations()]
    lab_report = only_report(dumps(bundle("collection", entries)))
    assert codes(lab_report) == ["6690-2", "751-8", "731-0"]
    assert str(lab_report.location) == "Bundle.entry[0].resource"
    assert str(lab_report.observations[0].location) == "Bundle.entry[1].resource"
    assert lab_report.observations[0].reference == "Observation/w"


def test_transaction_with_urn_uuid_references() -> None:
    urls = [f"urn:uuid:7c9e6679-7425-40de-944b-e07fc1f90ae{n}" for n in range(3)]
    entries = [(url, resource) for url, resource in zip(urls, cbc_observations(), strict=True)]
    dr = diagnostic_report("ignored", urls)
    del dr["id"]
    entries.insert(0, ("urn:uuid:0f8fad5b-d9cb-469f-a165-70867728950e", dr))
    data = bundle("transaction", entries)
    for entry in data["entry"]:
        entry["request"] = {"method": "POST", "url": entry["resource"]["resourceType"]}
    lab_report = only_report(dumps(data))
    assert codes(lab_report) == ["6690-2", "751-8", "731-0"]
    assert lab_report.reference == "urn:uuid:0f8fad5b-d9cb-469f-a165-70867728950e"
    assert lab_report.observations[2].reference == urls[2]


def test_searchset_with_absolute_urls() -> None:
    base = "https://fhir.example.org/r4"
    dr = diagnostic_report(
        "r1", ["Observation/w", f"{base}/Observation/n", f"{base}/Observation/l/_history/2"]
    )
    entries = [(f"{base}/DiagnosticReport/r1", dr)]
    entries += [(f"{base}/Observation/{obs['id']}", obs) for obs in cbc_observations()]
    lab_report = only_report(dumps(bundle("searchset", entries)))
    assert codes(lab_report) == ["6690-2", "751-8", "731-0"]
    assert lab_report.observations[0].reference == f"{base}/Observation/w"


def test_relative_reference_resolves_against_the_server_of_the_referrer() -> None:
    one, other = "https://a.example.org/fhir", "https://b.example.org/fhir"
    entries = [
        (f"{other}/Observation/w", observation("w", value=9.9)),
        (f"{one}/Observation/w", observation("w", value=2.9)),
        (f"{one}/DiagnosticReport/r1", diagnostic_report("r1", ["Observation/w"])),
    ]
    (dr_message, loose_message) = messages(dumps(bundle("searchset", entries)))
    (obs,) = dr_message.reports[0].observations
    assert obs.value is not None
    assert obs.value.number == Decimal("2.9")
    assert loose_message.reports[0].observations[0].reference == f"{other}/Observation/w"


def test_panel_observation_with_has_member() -> None:
    panel = observation(
        "panel",
        "58410-2",
        None,
        hasMember=[{"reference": "Observation/w"}, {"reference": "Observation/n"}],
    )
    entries = [("", panel)] + [("", resource) for resource in cbc_observations()[:2]]
    lab_report = only_report(dumps(bundle("collection", entries)))
    assert codes(lab_report) == ["6690-2", "751-8"]
    assert lab_report.codes[0].code == "58410-2"
    assert lab_report.reference == ""  # a panel is no DiagnosticReport to refer to


def test_report_result_pointing_at_a_panel_gives_the_panel_members() -> None:
    panel = observation(
        "panel",
        "58410-2",
        None,
        hasMember=[{"reference": "Observation/w"}, {"reference": "Observation/n"}],
    )
    entries = [("", diagnostic_report("r1", ["Observation/panel", "Observation/l"])), ("", panel)]
    entries += [("", resource) for resource in cbc_observations()]
    lab_report = only_report(dumps(bundle("collection", entries)))
    assert sorted(codes(lab_report)) == ["6690-2", "731-0", "751-8"]
    assert lab_report.reference == "DiagnosticReport/r1"


@pytest.mark.parametrize("kind", ["collection", "batch", "message", "document", "searchset"])
def test_loose_observations_group_by_subject_effective_specimen(kind: str) -> None:
    resources = cbc_observations("a", "Patient/p1") + cbc_observations("b", "Patient/p2")
    resources[2]["specimen"] = {"reference": "Specimen/s9"}
    found = messages(dumps(bundle(kind, [("", resource) for resource in resources])))
    assert [len(message.reports[0].observations) for message in found] == [2, 1, 3]
    assert found[2].patient is not None
    assert found[2].patient.reference == "Patient/p2"
    assert len({message.digest for message in found}) == 3


def test_an_observation_used_twice_is_read_once() -> None:
    entries = [
        ("", diagnostic_report("r1", ["Observation/w"])),
        ("", diagnostic_report("r2", ["Observation/w", "Observation/n"])),
        ("", observation("w")),
        ("", observation("n", "751-8")),
    ]
    first, second = messages(dumps(bundle("collection", entries)))
    assert codes(first.reports[0]) == ["6690-2"]
    assert codes(second.reports[0]) == ["751-8"]
    (issue,) = second.issues
    assert str(issue.location) == "Bundle.entry[1].resource.result[0]"
    assert "evaluated once" in issue.message


def test_unresolved_reference_is_a_warning() -> None:
    entries = [("", diagnostic_report("r1", ["Observation/w", "Observation/gone"]))]
    entries.append(("", observation("w")))
    (message,) = messages(dumps(bundle("collection", entries)))
    assert codes(message.reports[0]) == ["6690-2"]
    (issue,) = message.issues
    assert issue.severity is Severity.WARNING
    assert str(issue.location) == "Bundle.entry[0].resource.result[1]"


def test_history_reads_the_newest_version_and_skips_deletes() -> None:
    base = "https://fhir.example.org/r4/Observation"
    data = bundle(
        "history",
        [(f"{base}/w", observation("w", value=3.1)), (f"{base}/w", observation("w", value=6.0))],
    )
    data["entry"].append({"fullUrl": f"{base}/gone", "request": {"method": "DELETE"}})
    (obs,) = only_report(dumps(data)).observations
    assert obs.value is not None
    assert obs.value.number == Decimal("3.1")


def test_patient_sex_from_the_patient_in_the_bundle() -> None:
    patient = {
        "resourceType": "Patient",
        "id": "p1",
        "gender": "female",
        "name": [{"family": "Muster", "given": ["Anna"]}],
        "birthDate": "1961-02-03",
    }
    entries = [("urn:uuid:1", patient)]
    entries += [("", obs) for obs in cbc_observations(subject="urn:uuid:1")]
    (message,) = messages(dumps(bundle("collection", entries)))
    assert message.patient is not None
    assert (message.patient.gender, message.patient.family) == ("female", "Muster")
    assert message.patient.reference == "urn:uuid:1"


# --- values -----------------------------------------------------------------------------------


def one_observation(**fields: Any) -> Any:
    resource = observation("x", value=None)
    if "effectivePeriod" in fields:
        del resource["effectiveDateTime"]
    resource.update(fields)
    (obs,) = only_report(dumps(resource)).observations
    return obs


def test_comparator_is_kept() -> None:
    obs = one_observation(
        valueQuantity={
            "value": 0.5,
            "comparator": "<",
            "unit": "10*9/L",
            "system": UCUM,
            "code": "10*9/L",
        }
    )
    assert (obs.value.comparator, obs.value.number, obs.value.text) == ("<", Decimal("0.5"), "<0.5")


def test_value_string_reads_like_hl7_st() -> None:
    obs = one_observation(valueString="<0.5")
    assert (obs.value_type, obs.value.comparator, obs.value.number) == (
        "string",
        "<",
        Decimal("0.5"),
    )
    assert one_observation(valueString="see note").value.number is None


def test_unit_only_as_a_string() -> None:
    obs = one_observation(valueQuantity={"value": 4300, "unit": "cells/uL"})
    assert obs.value.number == Decimal(4300)
    assert (obs.unit.code, obs.unit.system, obs.unit.display) == ("cells/uL", "", "cells/uL")


def test_data_absent_reason_gives_no_value() -> None:
    obs = one_observation(dataAbsentReason={"coding": [{"code": "error"}], "text": "clotted"})
    assert obs.value is None
    assert "clotted" in obs.notes[0]


def test_reference_range_and_interpretation() -> None:
    obs = one_observation(
        valueQuantity={"value": 2.9, "unit": "10*9/L", "system": UCUM, "code": "10*9/L"},
        referenceRange=[{"low": {"value": 4.3}, "high": {"value": 10.8}, "text": "4.3 - 10.8"}],
        interpretation=[
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/"
                        "v3-ObservationInterpretation",
                        "code": "L",
                    }
                ]
            }
        ],
    )
    assert obs.reference_range == "4.3-10.8"
    assert obs.abnormal_flags == ("L",)
    assert one_observation(referenceRange=[{"low": {"value": 4.3}}]).reference_range == ">=4.3"
    assert one_observation(referenceRange=[{"text": "4.0-11.0"}]).reference_range == "4.0-11.0"


def test_effective_period_start_and_status_passed_through() -> None:
    obs = one_observation(effectivePeriod={"start": WHEN}, status="preliminary")
    assert (obs.effective, obs.status) == (WHEN, "preliminary")


# --- validation -------------------------------------------------------------------------------


def test_invalid_observation_rejects_its_report_only() -> None:
    bad = observation("bw", subject="Patient/p2")
    bad["valueQuantity"]["unit"] = 5
    entries = [("", resource) for resource in cbc_observations()]
    entries += [("", observation("bn", "751-8", subject="Patient/p2")), ("", bad)]
    good, rejected = units(dumps(bundle("collection", entries)))
    assert good.message is not None
    assert len(good.message.reports[0].observations) == 3
    assert rejected.message is None
    assert rejected.error is not None
    assert str(rejected.error.location) == "Bundle.entry[4].resource.valueQuantity.unit"
    assert rejected.error.severity is Severity.ERROR


def test_an_observation_that_is_no_cbc_field_is_not_validated() -> None:
    glucose = observation("g", "2345-7", 5.4, "mmol/L")
    glucose["valueQuantity"]["unit"] = ["not", "a", "string"]
    entries = [("", resource) for resource in [*cbc_observations(), glucose]]
    (message,) = messages(dumps(bundle("collection", entries)))
    assert len(message.reports[0].observations) == 4


def test_r5_elements_are_warnings_and_ignored() -> None:
    resource = observation(
        "w", triggeredBy=[{"observation": {"reference": "Observation/x"}, "type": "reflex"}]
    )
    resource["referenceRange"] = [{"low": {"value": 4.3}, "normalValue": {"text": "normal"}}]
    (message,) = messages(dumps(resource))
    assert sorted(str(issue.location) for issue in message.issues) == [
        "Observation.referenceRange[0].normalValue",
        "Observation.triggeredBy",
    ]
    assert all(issue.severity is Severity.WARNING for issue in message.issues)
    assert message.reports[0].observations[0].value is not None


def test_an_invalid_report_header_rejects_the_report() -> None:
    dr = diagnostic_report("r1", ["Observation/w"], status=7)
    (unit,) = units(dumps(bundle("collection", [("", dr), ("", observation("w"))])))
    assert unit.error is not None
    assert str(unit.error.location) == "Bundle.entry[0].resource.status"


# --- NDJSON -----------------------------------------------------------------------------------


def test_ndjson_report_after_its_results_and_before_them() -> None:
    lines = [
        {"resourceType": "Patient", "id": "p2", "gender": "male"},
        *cbc_observations("a"),
        diagnostic_report("r1", ["Observation/aw", "Observation/an", "Observation/al"]),
        diagnostic_report(
            "r2", ["Observation/bw", "Observation/bn"], subject={"reference": "Patient/p2"}
        ),
        *cbc_observations("b", "Patient/p2")[:2],
    ]
    found = units(ndjson(lines))
    assert [unit.offset for unit in found] == [5, 6]
    first, second = (unit.message for unit in found)
    assert first is not None
    assert second is not None
    assert codes(first.reports[0]) == ["6690-2", "751-8", "731-0"]
    assert str(first.reports[0].location) == "$ndjson[5]"
    assert str(first.reports[0].observations[0].location) == "$ndjson[2]"
    assert codes(second.reports[0]) == ["6690-2", "751-8"]
    assert second.patient is not None
    assert second.patient.gender == "male"


def test_ndjson_loose_runs_close_when_the_key_changes() -> None:
    lines = [*cbc_observations("a"), *cbc_observations("b", "Patient/p2")]
    found = units(ndjson(lines))
    assert [(unit.index, unit.offset) for unit in found] == [(0, 1), (1, 4)]


def test_ndjson_bad_lines_are_units_of_their_own() -> None:
    data = ndjson(cbc_observations()) + b'{"broken": \n[]\n{"resourceType":"Specimen"}\n'
    found = units(data)
    errors = [(unit.offset, str(unit.error.location)) for unit in found if unit.error]
    assert errors == [(4, "$ndjson[4] Line[4] Col[11]"), (5, "$ndjson[5]")]
    assert sum(1 for unit in found if unit.message) == 1


def test_ndjson_waiting_report_gives_up_after_the_window() -> None:
    grouper = NdjsonGrouper(window=3)
    dr = diagnostic_report("r1", ["Observation/late"])
    assert grouper.add(make_entry(dr, "$ndjson[1]", 1)) == []
    assert grouper.expire(3) == []
    (group,) = grouper.expire(4)
    assert group.members == []
    assert "did not come within 3 lines" in group.issues[0].message


def test_ndjson_memory_does_not_grow_with_the_file() -> None:
    def lines(count: int) -> Iterator[bytes]:
        for number in range(count):
            subject = f"Patient/p{number // 3}"
            rid, loinc, value, unit = CBC[number % 3]
            yield json.dumps(
                observation(f"{rid}{number}", loinc, value, unit, subject=subject)
            ).encode()

    def peak(count: int) -> int:
        tracemalloc.start()
        try:
            for _ in read_fhir_lines(lines(count), ZONE):
                pass
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    # both beyond the 1000-line window: what is held is the window, not the file
    small, large = peak(1500), peak(6000)
    assert large < small * 1.3


def test_one_line_document_is_not_ndjson() -> None:
    (message,) = messages(dumps(observation("w")) + b"\n")
    assert str(message.reports[0].location) == "Observation"


@pytest.mark.parametrize(
    ("element", "where"),
    [
        ({"valueQuantity": {"value": "2.1", "unit": "10*9/L"}}, "valueQuantity.value"),
        ({"referenceRange": [{"low": {"value": "4.3"}}]}, "referenceRange[0].low.value"),
    ],
)
def test_a_decimal_sent_as_a_string_is_rejected(element: dict[str, Any], where: str) -> None:
    resource = observation("w")
    resource.update(element)
    (unit,) = units(dumps(resource))
    assert unit.error is not None
    assert str(unit.error.location) == f"Observation.{where}"


def test_loose_report_is_located_at_its_first_entry() -> None:
    entries = [("urn:uuid:b", observation("b")), ("urn:uuid:a", observation("a", "751-8"))]
    lab_report = only_report(dumps(bundle("collection", entries)))
    assert str(lab_report.location) == "Bundle.entry[0].resource"
    assert [obs.reference for obs in lab_report.observations] == ["urn:uuid:a", "urn:uuid:b"]


# --- faults: each rejects its own line, document or report only -------------------------------


def three_patients(bad: dict[str, Any]) -> list[dict[str, Any]]:
    """Three reports (patients p1, p2, p3); p2's WBC carries ``bad``."""
    resources = cbc_observations("a", "Patient/p1") + cbc_observations("b", "Patient/p2")
    resources[3].update(bad)
    return resources + cbc_observations("c", "Patient/p3")


BAD_CONTAINED = [
    [{"resourceType": "Foo"}],
    [{"resourceType": "Transport"}],  # R5 only
    [{"resourceType": 5}],
    [{"resourceType": "Patient", "contained": [{"resourceType": "Foo"}]}],
]


@pytest.mark.parametrize("contained", BAD_CONTAINED)
def test_a_contained_resource_of_no_r4_type_rejects_its_report_only(contained: Any) -> None:
    resources = three_patients({"contained": contained})
    found = units(dumps(bundle("collection", [("", r) for r in resources])))
    assert [unit.message is not None for unit in found] == [True, False, True]
    error = found[1].error
    assert error is not None
    assert error.location.expression.startswith("Bundle.entry[3].resource.contained[0]")
    assert error.location.expression.endswith(".resourceType")


@pytest.mark.parametrize("contained", BAD_CONTAINED)
def test_ndjson_good_bad_good_gives_every_report(contained: Any) -> None:
    found = units(ndjson(three_patients({"contained": contained})))
    assert [unit.message is not None for unit in found] == [True, False, True]
    error = found[1].error
    assert error is not None
    assert error.location.expression.startswith("$ndjson[4].contained[0]")


def fail_for_patient(patient: str) -> Any:
    from leukofhir.ingest import fhir

    real = fhir.build_message

    def build(group: Any, source: Any, path: str) -> Any:
        if any(m.resource["subject"]["reference"] == patient for m in group.members):
            raise RuntimeError("a fault of ours")
        return real(group, source, path)

    return build


@pytest.mark.parametrize("form", ["bundle", "ndjson"])
def test_a_fault_while_building_one_report_rejects_that_report_only(
    monkeypatch: pytest.MonkeyPatch, form: str
) -> None:
    monkeypatch.setattr("leukofhir.ingest.fhir.build_message", fail_for_patient("Patient/p2"))
    resources = three_patients({})
    data = (
        dumps(bundle("collection", [("", r) for r in resources]))
        if form == "bundle"
        else ndjson(resources)
    )
    found = units(data)
    assert [unit.message is not None for unit in found] == [True, False, True]
    error = found[1].error
    assert error is not None
    assert error.code is ErrorCode.INTERNAL_ERROR
    assert error.issue_type == "exception"
    assert "RuntimeError" in error.message
    where = "Bundle.entry[3].resource" if form == "bundle" else "$ndjson[4]"
    assert error.location.expression == where


def test_a_fault_while_reading_one_ndjson_line_rejects_that_line_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from leukofhir.ingest import fhir

    real = fhir.make_entry

    def make(resource: dict[str, Any], path: str, position: int, full_url: str = "") -> Any:
        if path == "$ndjson[4]":
            raise TypeError("a fault of ours")
        return real(resource, path, position, full_url)

    monkeypatch.setattr(fhir, "make_entry", make)
    found = units(ndjson(three_patients({})))
    errors = [unit.error for unit in found if unit.error is not None]
    assert [e.location.expression for e in errors] == ["$ndjson[4]"]
    assert errors[0].code is ErrorCode.INTERNAL_ERROR
    assert sum(1 for unit in found if unit.message) == 3  # p1, p2 without its WBC, p3


def test_a_fault_before_a_document_is_grouped_rejects_the_document(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(*_: Any) -> Any:
        raise KeyError("a fault of ours")

    monkeypatch.setattr("leukofhir.ingest.fhir.bundle_entries", broken)
    (unit,) = units(dumps(bundle("collection", [("", r) for r in cbc_observations()])))
    assert unit.error is not None
    assert unit.error.code is ErrorCode.INTERNAL_ERROR
    assert unit.error.location.expression == "Bundle"


# --- numbers beyond the bounds ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "text", "words"),
    [
        ({"valueString": "<1E+999999999"}, "<1E+999999999", "about 1E+999999999"),
        ({"valueString": "1" * 30}, "1" * 30, "30 significant digits"),
        ({"valueString": "1E+9999999999999999999"}, "1E+9999999999999999999", "19 digits"),
    ],
)
def test_a_number_beyond_the_bounds_is_read_as_text(
    extra: dict[str, Any], text: str, words: str
) -> None:
    resource = observation("o1", value=None, **extra)
    (obs,) = only_report(dumps(resource)).observations
    assert obs.value is not None
    assert (obs.value.text, obs.value.number) == (text, None)
    assert words in obs.value.problem


def test_a_quantity_value_beyond_the_bounds_keeps_no_number() -> None:
    data = dumps(observation("o1", value="VALUE")).replace(b'"VALUE"', b"1E-99999999")
    (obs,) = only_report(data).observations
    assert obs.value is not None
    assert (obs.value.text, obs.value.number) == ("1E-99999999", None)


@pytest.mark.parametrize("high", [b"1E+400", b"9" * 4000])
def test_a_reference_range_beyond_the_bounds_is_not_read_as_a_range(high: bytes) -> None:
    ranges = [{"low": {"value": 4.3}, "high": {"value": "HIGH"}}]
    data = dumps(observation("o1", referenceRange=ranges)).replace(b'"HIGH"', high)
    (obs,) = only_report(data).observations
    assert obs.reference_range == f"4.3-{high.decode()}"  # kept as text, as sent
    assert parse_range(obs.reference_range) is None  # never a number in the output


@pytest.mark.parametrize(
    "text", ["1" * 20_000 + " x", "<" + "1" * 20_000 + "e", "." + "1" * 20_000]
)
def test_a_long_value_string_is_read_in_linear_time(text: str) -> None:
    # the pattern \d+\.?\d* tried every split of a digit run: 8,000 digits took 4 s
    data = dumps(observation("o1", value=None, valueString=text))
    start = time.perf_counter()
    (obs,) = only_report(data).observations
    assert time.perf_counter() - start < 0.5
    assert obs.value is not None
    assert obs.value.text == text


@pytest.mark.parametrize("form", ["bundle", "ndjson"])
def test_a_result_reference_longer_than_the_bound_is_not_followed(form: str) -> None:
    long = "https://x/" + "p" * 50_000 + "/Observation/w"
    resources = [diagnostic_report("r1", ["Observation/n", long]), *cbc_observations()]
    data = dumps(bundle("collection", [("", r) for r in resources]))
    found = units(data if form == "bundle" else ndjson(resources))
    report = next(u.message for u in found if u.message and u.message.reports[0].reference)
    (missing,) = [i for i in report.issues if i.location.expression.endswith("result[1]")]
    assert missing.severity is Severity.WARNING
    assert f"a reference of {len(long):,} characters" in missing.message
    assert len(missing.message) < 300

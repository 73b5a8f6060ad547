"""The transaction Bundle: order, requests, references, Flags and Provenance."""

from __future__ import annotations

from typing import Any

from leukofhir.emit.flag import CTCAE_GRADE, FLAG_DETAIL, FLAG_PRIORITY
from leukofhir.pipeline import process
from tests.conftest import SAMPLES, make_context


def bundle_of(name: str) -> dict[str, Any]:
    outcome = next(process((SAMPLES / name).read_bytes(), make_context()))
    return outcome.reports[0].bundle


def resources(bundle: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == kind]


def test_entry_order_and_requests() -> None:
    bundle = bundle_of("05-leukopenia-g4-agranulocytosis.hl7")
    kinds = [e["resource"]["resourceType"] for e in bundle["entry"]]
    assert kinds[0] == "Patient"
    assert kinds[-1] == "Provenance"
    assert kinds.index("DiagnosticReport") > max(
        i for i, k in enumerate(kinds) if k == "Observation"
    )
    for entry in bundle["entry"]:
        assert entry["fullUrl"].startswith("urn:uuid:")
        kind, request = entry["resource"]["resourceType"], entry["request"]
        if kind in {"Observation", "DiagnosticReport", "Flag"}:  # conditional update
            assert request == {"method": "PUT", "url": f"{kind}?" + request["url"].split("?")[1]}
            assert request["url"].split("?")[1].startswith("identifier=")
        elif kind == "Patient":  # conditional create
            assert request["method"] == "POST"
            assert request["ifNoneExist"].startswith("identifier=")
        else:  # Provenance: conditional create on the document's tag
            assert request["method"] == "POST"
            assert request["ifNoneExist"] == (
                f"_tag=https://leukofhir.dev/fhir/sid/document%7C{bundle['id']}"
            )


def test_every_reference_points_into_the_bundle() -> None:
    bundle = bundle_of("11-percent-only-differential.hl7")
    urls = {e["fullUrl"] for e in bundle["entry"]}
    text = str(bundle)
    import re

    for reference in re.findall(r"'reference': '([^']+)'", text):
        assert reference in urls


def test_flags_carry_priority_grade_and_evidence() -> None:
    bundle = bundle_of("03-leukopenia-g2-wbc-2p99.hl7")
    flag = next(
        f for f in resources(bundle, "Flag") if f["code"]["coding"][0]["code"] == "84828003"
    )
    extensions = {e["url"]: e for e in flag["extension"]}
    assert extensions[FLAG_PRIORITY]["valueCodeableConcept"]["coding"][0]["code"] == "PM"
    assert extensions[CTCAE_GRADE]["valueInteger"] == 2
    assert FLAG_DETAIL in extensions
    assert flag["status"] == "active"
    assert flag["period"]["start"]


def test_derived_counts_name_their_sources() -> None:
    bundle = bundle_of("11-percent-only-differential.hl7")
    derived = [o for o in resources(bundle, "Observation") if "derivedFrom" in o]
    assert derived
    assert all(len(o["derivedFrom"]) == 2 for o in derived)
    report = resources(bundle, "DiagnosticReport")[0]
    assert len(report["result"]) == len(resources(bundle, "Observation"))


def test_values_are_exactly_as_sent() -> None:
    bundle = bundle_of("05-leukopenia-g4-agranulocytosis.hl7")
    wbc = next(
        o for o in resources(bundle, "Observation") if o["code"]["coding"][0]["code"] == "6690-2"
    )
    assert str(wbc["valueQuantity"]["value"]) in {"0.8", "0.80"}
    assert wbc["interpretation"][0]["coding"][0]["code"] == "LL"


def test_provenance_names_the_rule_set_and_the_message() -> None:
    bundle = bundle_of("01-normal-cbc-5-part-diff.hl7")
    provenance = resources(bundle, "Provenance")[0]
    assert provenance["policy"] == ["https://leukofhir.dev/fhir/rules/leukopenia/1.2.0"]
    assert provenance["recorded"] == "2026-01-01T00:00:00+00:00"
    assert provenance["entity"][0]["what"]["identifier"]["value"]


def test_quantity_with_comparator_keeps_its_value_and_field_order() -> None:
    wbc = next(
        o
        for o in resources(bundle_of("22-wbc-sn-comparator.hl7"), "Observation")
        if o["code"]["coding"][0]["code"] == "6690-2"
    )
    assert wbc["valueQuantity"] == {
        "value": 0.5,
        "comparator": "<",
        "unit": "thousand per microliter",
        "system": "http://unitsofmeasure.org",
        "code": "10*3/uL",
    }
    assert list(wbc["valueQuantity"]) == ["value", "comparator", "unit", "system", "code"]

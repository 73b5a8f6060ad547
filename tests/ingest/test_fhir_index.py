"""References taken apart in linear time, and bounded in length."""

from __future__ import annotations

import time

import pytest

from leukofhir.ingest.fhir_index import ResourceIndex, make_entry, restful_base, type_id
from leukofhir.limits import MAX_REFERENCE


@pytest.mark.parametrize(
    ("reference", "expected"),
    [
        ("Patient/p1", "Patient/p1"),
        ("https://lab.example.org/fhir/Observation/o-1.2", "Observation/o-1.2"),
        ("Observation/1/_history/2", "Observation/1"),
        ("http://x/fhir/Observation/1/_history/v.3", "Observation/1"),
        ("urn:uuid:3f1c2a9e-6b4d-4e7a-9c1b-0d5e8f000010", ""),
        ("#wbc", ""),
        ("Observation/", ""),
        ("Observation/" + "a" * 64, "Observation/" + "a" * 64),
        ("Observation/" + "a" * 65, ""),
        ("observation/1", ""),
        ("x:Patient/1", ""),  # the type is a whole path segment (FHIR's reference pattern)
    ],
)
def test_type_id(reference: str, expected: str) -> None:
    assert type_id(reference) == expected


@pytest.mark.parametrize(
    ("full_url", "expected"),
    [
        ("https://lab.example.org/fhir/Observation/o1", "https://lab.example.org/fhir"),
        ("http://x/Observation/1/_history/2", "http://x"),
        ("http://Observation/1", ""),
        ("urn:uuid:3f1c2a9e-6b4d-4e7a-9c1b-0d5e8f000010", ""),
        ("https://x/fhir/observation/1", ""),
    ],
)
def test_restful_base(full_url: str, expected: str) -> None:
    assert restful_base(full_url) == expected


@pytest.mark.parametrize(
    "reference",
    [
        "T" * 40_000,  # the regular expression searched before took 10 s on this
        "Patient/" + "A" * 40_000,
        "https://" + "/Aa" * 13_000 + "/Observation/1",
        "https://x/" + "A/" * 20_000,
        # within the bound, so that the expression itself is timed
        "T" * MAX_REFERENCE,
        "A/" * (MAX_REFERENCE // 2),
        "/A/1" * (MAX_REFERENCE // 4),
        "https://x/" + "Aa/" * 1350 + "1",
        "Observation/1/_history/" * 170,
    ],
)
def test_long_references_are_read_in_linear_time(reference: str) -> None:
    index = ResourceIndex()
    source = make_entry({"resourceType": "Observation"}, "Observation", 0, reference)
    start = time.perf_counter()
    for _ in range(10):
        type_id.cache_clear()
        restful_base.cache_clear()
        type_id(reference)
        restful_base(reference)
        index.resolve(reference, source)
    assert time.perf_counter() - start < 0.5


def test_a_reference_longer_than_the_bound_is_not_followed() -> None:
    index = ResourceIndex()
    rid = "o" * 64
    target = make_entry({"resourceType": "Observation", "id": rid}, "Bundle.entry[0]", 0)
    index.add(target)
    source = make_entry({"resourceType": "DiagnosticReport"}, "Bundle.entry[1]", 1)
    near = "https://x/" + "p" * (MAX_REFERENCE - 100) + f"/Observation/{rid}"
    assert index.resolve(near, source) is target
    far = "https://x/" + "p" * MAX_REFERENCE + f"/Observation/{rid}"
    assert index.resolve(far, source) is None
    assert type_id(far) == ""

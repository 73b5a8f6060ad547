"""Validation of the resources the rule set uses: whatever the models raise, an issue."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from leukofhir.errors import ErrorCode, Severity
from leukofhir.ingest import fhir_validate
from leukofhir.ingest.fhir_validate import validate_resource
from leukofhir.limits import MAX_REFERENCE
from tests.ingest import test_fhir

PATH = "Bundle.entry[2].resource"


def observation(rid: str, **extra: Any) -> dict[str, Any]:
    """A CBC Observation as the JSON reader gives it (the value a Decimal)."""
    return test_fhir.observation(rid, value=Decimal("5.1"), **extra)


@pytest.mark.parametrize(
    ("contained", "where", "words"),
    [
        ([{"resourceType": "Foo"}], "contained[0]", '"Foo" is not an R4 resource type'),
        ([{"resourceType": "Transport"}], "contained[0]", '"Transport" is not an R4'),
        ([{"resourceType": 5}], "contained[0]", "5 is not a string"),
        ([{"resourceType": ["Patient"]}], "contained[0]", "is not a string"),
        ([{"resourceType": "CodeableConcept"}], "contained[0]", "not an R4 resource type"),
        (
            [
                {"resourceType": "Patient", "id": "p"},
                {"resourceType": "Patient", "contained": [{"resourceType": "Foo"}]},
            ],
            "contained[1].contained[0]",
            "not an R4 resource type",
        ),
        (
            [{"resourceType": "Bundle", "type": "collection", "entry": [{"resource": {}}]}],
            "",
            "",
        ),
    ],
)
def test_a_contained_resource_of_no_r4_type_is_a_located_error(
    contained: list[Any], where: str, words: str
) -> None:
    # the models raise KeyError ('R4.FooType') or TypeError on these, not a ValidationError
    failure, _ = validate_resource(observation("o1", contained=contained), PATH)
    if not words:
        assert failure is None or failure.code is not ErrorCode.INTERNAL_ERROR
        return
    assert failure is not None
    assert failure.severity is Severity.ERROR
    assert failure.location.expression == f"{PATH}.{where}.resourceType"
    assert words in failure.message


def test_anything_else_the_models_raise_rejects_the_report_with_207(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(_: Any) -> None:
        raise KeyError("R4.SomethingType")

    monkeypatch.setattr(fhir_validate.Observation, "model_validate", broken)
    failure, _ = validate_resource(observation("o1"), PATH)
    assert failure is not None
    assert failure.code is ErrorCode.INTERNAL_ERROR
    assert failure.issue_type == "exception"
    assert failure.location.expression == PATH
    assert "KeyError" in failure.message


def test_an_r5_element_nested_deep_is_removed_without_copying_the_resource() -> None:
    # copy.deepcopy of the whole resource overflowed the stack (RecursionError) at 600 levels
    deep: dict[str, Any] = {"reference": "Observation/x"}
    for _ in range(600):
        deep = {"extension": [{"url": "http://x", "valueReference": deep}]}
    resource = observation("o1", triggeredBy=[deep], note=[{"text": "kept"}])
    failure, warnings = validate_resource(resource, PATH)
    assert failure is None
    assert [w.location.expression for w in warnings] == [f"{PATH}.triggeredBy"]
    assert resource["triggeredBy"] == [deep]  # the input is not changed


def test_a_deep_r5_element_inside_a_list_is_removed_from_a_copy_only() -> None:
    ranges = [{"low": {"value": 1}, "normalValue": {"text": "x"}}]
    resource = observation("o1", referenceRange=ranges)
    failure, warnings = validate_resource(resource, PATH)
    assert failure is None
    assert [w.location.expression for w in warnings] == [f"{PATH}.referenceRange[0].normalValue"]
    assert resource["referenceRange"][0]["normalValue"] == {"text": "x"}


@pytest.mark.parametrize(
    ("extra", "full_url", "element"),
    [
        ({"subject": "Patient/" + "p" * MAX_REFERENCE}, "", f"{PATH}.subject.reference"),
        ({}, "https://x/" + "f" * MAX_REFERENCE, "Bundle.entry[2].fullUrl"),
    ],
)
def test_a_reference_the_output_would_write_longer_than_the_bound_rejects_the_report(
    extra: dict[str, Any], full_url: str, element: str
) -> None:
    failure, _ = validate_resource(observation("o1", **extra), PATH, full_url)
    assert failure is not None
    assert failure.code is ErrorCode.VALUE_TOO_LONG
    assert failure.issue_type == "too-long"
    assert failure.location.expression == element
    assert len(failure.message) < 300  # says how long, does not repeat it


def test_other_long_references_are_left_to_grouping() -> None:
    # not followed (fhir_index), and reported there as a result that is not read
    members = [{"reference": "Observation/a"}, {"reference": "x" * 5000}]
    resource = observation("o1", hasMember=members, specimen={"reference": "S" * 50_000})
    assert validate_resource(resource, PATH) == (None, [])


def test_a_reference_at_the_bound_is_read() -> None:
    subject = "https://x/" + "p" * (MAX_REFERENCE - 30) + "/Patient/p1"
    assert validate_resource(observation("o1", subject=subject), PATH) == (None, [])

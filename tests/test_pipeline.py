"""process(): one outcome per message, never an exception, byte-identical output."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from leukofhir.context import Context
from leukofhir.emit.jsonio import dumps
from leukofhir.errors import ErrorCode, Severity
from leukofhir.ingest.framing import RawMessage
from leukofhir.pipeline import Disposition, process, process_message
from tests.conftest import SAMPLES, make_context

CONTEXT = make_context()
NORMAL = (SAMPLES / "01-normal-cbc-5-part-diff.hl7").read_bytes()
SEGMENT = st.sampled_from(
    [
        b"MSH|^~\\&|A|B|C|D|20260101||ORU^R01|1|P|2.5.1",
        b"PID|1||X",
        b"OBR|1|P|F|58410-2^CBC^LN",
        b"OBX|1|NM|6690-2^WBC^LN||2.5|K/uL",
        b"OBX|1|SN|751-8^ANC^LN||<^0.1|/uL",
        b"NTE|1||x",
        b"SPM|1",
        b"FHS|^~\\&",
        b"BHS|^~\\&",
        b"BTS|1",
        b"ORC|RE",
    ]
)


def outputs(data: bytes, context: Context = CONTEXT) -> bytes:
    return b"\n".join(dumps(doc) for o in process(data, context) for doc in o.documents())


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.binary(max_size=2000))
def test_arbitrary_bytes_never_raise(data: bytes) -> None:
    for outcome in process(data, CONTEXT):
        assert not any("leukofhir failed" in i.message for i in outcome.issues)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.lists(st.tuples(SEGMENT, st.sampled_from([b"\r", b"\n", b"\r\n"])), max_size=25))
def test_segment_soup_never_fails_on_our_side(parts: list[tuple[bytes, bytes]]) -> None:
    data = b"".join(segment + end for segment, end in parts)
    for outcome in process(data, CONTEXT):
        assert not any(i.code is ErrorCode.INTERNAL_ERROR for i in outcome.issues), outcome.issues
        if outcome.disposition is Disposition.REJECTED:
            assert any(i.severity is Severity.ERROR for i in outcome.issues)


@settings(max_examples=50, deadline=None)
@given(st.integers(min_value=0, max_value=len(NORMAL)), st.binary(max_size=20))
def test_same_input_same_bytes(cut: int, noise: bytes) -> None:
    data = NORMAL[:cut] + noise + NORMAL[cut:]
    assert outputs(data) == outputs(data)


def test_an_unexpected_fault_becomes_a_rejected_outcome() -> None:
    broken = make_context(terminology=None)  # build_cbc will fail on our side
    outcome = process_message(RawMessage(NORMAL, 0, 0), broken)
    assert outcome.disposition is Disposition.REJECTED
    assert outcome.issues[0].code is ErrorCode.INTERNAL_ERROR
    document = outcome.operation_outcome()
    assert document is not None
    assert document["issue"][0]["code"] == "exception"


def test_validate_output_accepts_our_bundles() -> None:
    outcome = next(process(NORMAL, make_context(validate_output=True)))
    assert outcome.disposition is Disposition.PROCESSED


def test_a_batch_gives_one_outcome_per_message() -> None:
    data = (SAMPLES / "15-fhs-bhs-batch.hl7").read_bytes()
    outcomes = list(process(data, CONTEXT))
    assert [o.index for o in outcomes] == list(range(len(outcomes)))
    assert len(outcomes) == 3


def test_an_empty_input_is_rejected_not_ignored() -> None:
    for data in (b"", b"\r\n  \n"):
        (outcome,) = process(data, CONTEXT)
        assert outcome.disposition is Disposition.REJECTED
        assert "no HL7 message" in outcome.issues[0].message


def message_with(*obx: str) -> bytes:
    head = (
        "MSH|^~\\&|LIS|LAB|EHR|HOSP|20260314093015||ORU^R01|Q1|P|2.5.1\r"
        "PID|1||MRN1^^^HOSP^MR||DOE^JANE||19700101|F\r"
        "OBR|1|PL1|FI1|58410-2^CBC^LN|||20260314080000\r"
    )
    return (head + "\r".join(obx)).encode()


def test_two_lines_with_the_same_code_keep_two_identifiers() -> None:
    data = message_with(
        "OBX|1|NM|6690-2^WBC^LN||2.5|10*3/uL|||||F", "OBX|2|NM|6690-2^WBC^LN||5.0|10*3/uL|||||F"
    )
    (outcome,) = process(data, CONTEXT)
    bundle = outcome.reports[0].bundle
    idents = [
        e["resource"]["identifier"][0]["value"]
        for e in bundle["entry"]
        if e["resource"]["resourceType"] == "Observation"
    ]
    assert len(idents) == len(set(idents)) == 2
    assert any(i.code is ErrorCode.DUPLICATE_KEY for i in outcome.issues)


def test_a_bounded_wbc_with_an_exact_percent_decides_neutropenia() -> None:
    data = message_with(
        "OBX|1|SN|6690-2^WBC^LN||<^0.5|10*3/uL|||||F", "OBX|2|NM|770-8^Neutrophils %^LN||50|%|||||F"
    )
    (outcome,) = process(data, CONTEXT)
    findings = {f.rule_id: f for f in outcome.reports[0].evaluation.findings}
    assert findings["neutropenia"].grade == 4
    assert findings["neutropenia"].critical
    assert "agranulocytosis" not in findings  # '<0.25' cannot tell < 0.2


def test_a_conclusion_never_claims_absence_of_what_was_not_evaluated() -> None:
    data = message_with("OBX|1|NM|6690-2^WBC^LN||3.5||||||F")
    (outcome,) = process(data, CONTEXT)
    report = next(
        e["resource"]
        for e in outcome.reports[0].bundle["entry"]
        if e["resource"]["resourceType"] == "DiagnosticReport"
    )
    assert "No leukopenia" not in report["conclusion"]
    assert "Not evaluated: leukopenia" in report["conclusion"]


# --- reliability (issue 9): every input gives outcomes, valid JSON, bounded in size --------


def documents_of(data: bytes, context: Context = CONTEXT) -> list[bytes]:
    """Every output document, each checked by the standard library's JSON parser."""
    out = [dumps(doc) for o in process(data, context) for doc in o.documents()]
    for document in out:
        json.loads(document)
    return out


def fhir_observation(value: str, **extra: object) -> dict[str, object]:
    resource: dict[str, object] = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "6690-2"}]},
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": "2026-03-14T08:00:00+01:00",
        "valueQuantity": {"value": "VALUE", "unit": "10*9/L"},
    }
    resource.update(extra)
    return resource


def fhir_bundle(*resources: dict[str, object], value: str) -> bytes:
    entries = [
        {"fullUrl": f"urn:uuid:3f1c2a9e-6b4d-4e7a-9c1b-0d5e8f00000{n}", "resource": r}
        for n, r in enumerate(resources)
    ]
    text = json.dumps({"resourceType": "Bundle", "type": "collection", "entry": entries})
    return text.replace('"VALUE"', value).encode()


@pytest.mark.parametrize("value", ["1E+999999999", "1E-99999999", "1E+99999", "-1E+9999"])
def test_an_absurd_decimal_is_refused_before_it_is_written(value: str) -> None:
    # known only by urn:uuid, the Observation is written anew: 1E+999999999 made a 1 GB line
    data = fhir_bundle(fhir_observation(value), value=value)
    assert len(data) < 700
    (outcome,) = process(data, CONTEXT)
    assert outcome.disposition is Disposition.PROCESSED
    # (the other warning: no birth date, so the adult limits are used)
    (refused,) = [
        i
        for i in outcome.issues
        if i.severity is Severity.WARNING and i.location.expression != "Patient.birthDate"
    ]
    assert refused.location.expression == "Bundle.entry[0].resource.value"
    assert "value not used" in refused.message
    assert sum(len(d) for d in documents_of(data)) < 20 * len(data)
    (written,) = [
        e["resource"]
        for e in outcome.reports[0].bundle["entry"]
        if e["resource"]["resourceType"] == "Observation"
    ]
    assert written["valueString"] == value  # as sent, never formatted as a number


def test_an_hl7_number_of_5000_digits_is_not_a_5000_digit_json_number() -> None:
    digits = "3" * 5000
    data = message_with(f"OBX|1|NM|6690-2^WBC^LN||{digits}|10*3/uL|4.0-1{digits}||||F")
    (outcome,) = process(data, CONTEXT)
    assert outcome.disposition is Disposition.PROCESSED
    (refused,) = [i for i in outcome.issues if str(i.location) == "OBX[1]-5"]
    assert refused.severity is Severity.WARNING
    assert "5,000 significant digits" in refused.message
    assert sum(len(d) for d in documents_of(data)) < 5 * len(data)  # stdlib json reads it
    observation = outcome.reports[0].bundle["entry"][1]["resource"]
    assert observation["valueString"] == digits  # the text as sent, never a number
    assert "low" not in observation["referenceRange"][0]


@pytest.mark.parametrize("forged", ["\x1e0123\x1e", "\x1e5.100\x1e", '\x1e1}, "x": {\x1e'])
def test_no_input_text_is_written_as_a_number(forged: str) -> None:
    # FHIR input strings reach the output as sent (identifier, subject reference): the JSON
    # writer's old number marker (\x1e…\x1e) in one came out as the bare number 0123
    observation = fhir_observation("4.1", identifier=[{"system": "urn:x", "value": forged}])
    observation["subject"] = {"reference": forged}
    data = fhir_bundle(observation, value="4.1")
    # written back to the source: its references and identifiers as sent
    (document,) = [
        doc
        for d in documents_of(data, make_context(fhir_target="source"))
        if (doc := json.loads(d))["resourceType"] == "Bundle"
    ]
    resources = [entry["resource"] for entry in document["entry"]]
    report = next(r for r in resources if r["resourceType"] == "DiagnosticReport")
    assert report["subject"] == {"reference": forged}
    assert report["result"][0]["identifier"] == {"system": "urn:x", "value": forged}
    # to another server (the default): the Observation written by its identifier, a string
    (document,) = [
        doc for d in documents_of(data) if (doc := json.loads(d))["resourceType"] == "Bundle"
    ]
    written = [e["resource"] for e in document["entry"]]
    (own,) = [r for r in written if r["resourceType"] == "Observation"]
    assert isinstance(own["identifier"][0]["value"], str)


def test_a_document_that_is_not_json_is_located_by_line_and_column() -> None:
    (outcome,) = process(b'{"resourceType": "Observation",\n "x": }', CONTEXT)
    document = outcome.operation_outcome()
    assert document is not None
    (issue,) = document["issue"]
    assert issue["location"] == ["Line[2] Col[7]"]
    assert "expression" not in issue
    outcomes = process(b'{"resourceType": "Observation"}\n{"id": \n', CONTEXT)
    (line,) = [o for o in outcomes if o.disposition is Disposition.REJECTED]
    document = line.operation_outcome()
    assert document is not None
    assert document["issue"][0]["location"] == ["Line[2] Col[7]"]
    assert document["issue"][0]["expression"] == ["$ndjson[2]"]


def test_a_fault_in_reading_the_input_ends_it_with_a_rejected_outcome(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from leukofhir import pipeline

    def frames(data: bytes) -> Iterator[RawMessage]:
        yield RawMessage(NORMAL, 0, 0)
        raise RuntimeError("a fault of ours")

    monkeypatch.setattr(pipeline, "split_messages", frames)
    first, second = process(NORMAL + NORMAL, CONTEXT)
    assert first.disposition is Disposition.PROCESSED
    assert second.disposition is Disposition.REJECTED
    assert (second.index, second.issues[0].code) == (1, ErrorCode.INTERNAL_ERROR)


def test_a_lone_surrogate_never_reaches_the_writer() -> None:
    # found by tests/test_pipeline_fuzz.py: the quoted resourceType made orjson raise
    (document,) = documents_of(b'{"resourceType": "\\ud800", "id": "x"}')
    assert json.loads(document)["issue"][0]["location"] == ["Line[1] Col[19]"]

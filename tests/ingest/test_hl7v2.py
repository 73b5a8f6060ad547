"""ORU^R01 / OUL^R22 → LabMessage: header checks, grouping, values, times."""

from __future__ import annotations

import time
from decimal import Decimal

import pytest

from leukofhir.errors import ErrorCode, StructureError, UnsupportedError
from leukofhir.ingest.er7 import parse_message
from leukofhir.ingest.hl7v2 import read_lab_message
from leukofhir.model import LOINC, LabMessage

MSH = "MSH|^~\\&|LIS|LAB|EHR|HOSP|20260314093015||{type}|CTRL1|P|{version}"
PID = "PID|1||MRN123^^^HOSP^MR~ALT9^^^OTHER||DOE^JANE^Q||19700101|F"


def read(*segments: str, type_: str = "ORU^R01", version: str = "2.5.1") -> LabMessage:
    data = "\r".join((MSH.format(type=type_, version=version), *segments)).encode()
    return read_lab_message(parse_message(data), data, "UTC")


def test_header_patient_and_ids() -> None:
    message = read(PID, "OBR|1|PL1|FI1^LAB|58410-2^CBC^LN|||202603140800")
    assert (message.control_id, message.sending_facility, message.version) == (
        "CTRL1",
        "LAB",
        "2.5.1",
    )
    assert message.sent_at == "2026-03-14T09:30:15+00:00"
    patient = message.patient
    assert patient is not None
    assert [(i.value, i.system, i.type_code) for i in patient.identifiers] == [
        ("MRN123", "HOSP", "MR"),
        ("ALT9", "OTHER", ""),
    ]
    assert (patient.family, patient.given, patient.birth_date, patient.gender) == (
        "DOE",
        ("JANE", "Q"),
        "1970-01-01",
        "female",
    )
    report = message.reports[0]
    assert report.placer_order is not None
    assert report.filler_order is not None
    assert (report.placer_order.value, report.filler_order.value) == ("PL1", "FI1")
    assert report.filler_order.system == "LAB"
    assert report.effective == "2026-03-14T08:00:00+00:00"


def test_each_obr_takes_only_the_orc_right_before_it() -> None:
    message = read(
        PID,
        "ORC|RE|ORCPL1|ORCFI1",
        "OBR|1|PL1|FI1|58410-2^CBC^LN",
        "OBX|1|NM|6690-2^WBC^LN||5.1|10*3/uL",
        "OBR|2|PL2|FI2|58410-2^CBC^LN",
        "OBX|1|NM|6690-2^WBC^LN||6.1|10*3/uL",
    )
    first, second = message.reports
    assert first.filler_order is not None
    assert first.filler_order.value == "ORCFI1"
    assert second.filler_order is not None
    assert second.filler_order.value == "FI2"


def test_obx_after_spm_and_nte_belong_to_the_open_obr() -> None:
    message = read(
        PID,
        "OBR|1|PL1|FI1|58410-2^CBC^LN",
        "OBX|1|NM|6690-2^WBC^LN||5.1|10*3/uL",
        "NTE|1||first note",
        "NTE|2||second note",
        "SPM|1|SP1",
        "OBX|2|NM|777-3^PLT^LN||250|10*3/uL",
    )
    report = message.reports[0]
    assert [str(o.location) for o in report.observations] == ["OBX[1]", "OBX[2]"]
    assert report.observations[0].notes == ("first note", "second note")


def test_obx_before_any_obr_is_reported_not_dropped() -> None:
    message = read(
        PID,
        "SPM|1|SP1",
        "OBX|1|NM|6690-2^WBC^LN||5.1|10*3/uL",
        "OBR|1|PL1|FI1|58410-2^CBC^LN",
        type_="OUL^R22",
    )
    assert message.reports[0].observations == ()
    assert any("OBX[1]" in i.message and "not used" in i.message for i in message.issues)


@pytest.mark.parametrize(
    ("obx", "text", "number", "comparator"),
    [
        ("OBX|1|NM|6690-2^WBC^LN||05.100|10*3/uL", "05.100", Decimal("5.100"), ""),
        ("OBX|1|SN|6690-2^WBC^LN||<^0.5|10*3/uL", "<0.5", Decimal("0.5"), "<"),
        ("OBX|1|SN|6690-2^WBC^LN||=^4.2|10*3/uL", "=4.2", Decimal("4.2"), ""),
        ("OBX|1|SN|6690-2^WBC^LN||^2^-^4|10*3/uL", "2-4", None, ""),
        ("OBX|1|SN|6690-2^WBC^LN||<>^4|10*3/uL", "<>4", None, ""),
        ("OBX|1|NM|6690-2^WBC^LN||<0.5|10*3/uL", "<0.5", Decimal("0.5"), "<"),
        ("OBX|1|ST|6690-2^WBC^LN||NOVALUE|10*3/uL", "NOVALUE", None, ""),
        ("OBX|1|NM|6690-2^WBC^LN||27~25|10*3/uL", "27~25", None, ""),
    ],
)
def test_values(obx: str, text: str, number: Decimal | None, comparator: str) -> None:
    value = read(PID, "OBR|1|PL1|FI1|58410-2^CBC^LN", obx).reports[0].observations[0].value
    assert value is not None
    assert (value.text, value.number, value.comparator) == (text, number, comparator)


@pytest.mark.parametrize(
    ("obx", "number", "words"),
    [
        ("OBX|1|NM|6690-2^WBC^LN||" + "3" * 5000 + "|10*3/uL", None, "5,000 significant"),
        ("OBX|1|NM|6690-2^WBC^LN||<" + "9" * 19 + "|10*3/uL", None, "19 significant"),
        ("OBX|1|SN|6690-2^WBC^LN||>^0." + "0" * 18 + "1|10*3/uL", None, "finer"),
        ("OBX|1|NM|6690-2^WBC^LN||" + "0" * 30 + "4.2|10*3/uL", Decimal("4.2"), ""),
        ("OBX|1|NM|6690-2^WBC^LN||999999999999999999|10*3/uL", Decimal("1E18") - 1, ""),
    ],
)
def test_a_number_beyond_the_bounds_is_kept_as_text(
    obx: str, number: Decimal | None, words: str
) -> None:
    value = read(PID, "OBR|1|PL1|FI1|58410-2^CBC^LN", obx).reports[0].observations[0].value
    assert value is not None
    assert value.number == number
    assert words in value.problem
    assert value.text == obx.split("|")[5].replace("^", "")


@pytest.mark.parametrize(
    "text", ["1" * 20_000 + "!", "1" * 20_000 + ".1.", "<" + "1" * 20_000 + "x"]
)
def test_a_long_value_is_read_in_linear_time(text: str) -> None:
    # the number pattern \d+\.?\d* tried every split of a digit run: 8,000 digits took 1.4 s
    start = time.perf_counter()
    value = read(PID, "OBR|1|PL1|FI1|58410-2^CBC^LN", f"OBX|1|NM|6690-2^WBC^LN||{text}")
    assert time.perf_counter() - start < 0.5
    observation = value.reports[0].observations[0]
    assert observation.value is not None
    assert observation.value.number is None


def test_codes_units_flags_and_alternate_loinc() -> None:
    obx = (
        "OBX|1|NM|WBCX^White count^L^6690-2^Leukocytes^LN||4.2|10*3/uL^per nL^UCUM|4.3-10.8"
        "|L~A|||F|||202603140815"
    )
    observation = read(PID, "OBR|1|PL1|FI1|58410-2^CBC^LN", obx).reports[0].observations[0]
    assert [(c.code, c.system) for c in observation.codes] == [("WBCX", ""), ("6690-2", LOINC)]
    assert observation.unit is not None
    assert (observation.unit.code, observation.unit.system) == (
        "10*3/uL",
        "http://unitsofmeasure.org",
    )
    assert observation.abnormal_flags == ("L", "A")
    assert observation.reference_range == "4.3-10.8"
    assert observation.effective == "2026-03-14T08:15:00+00:00"


def test_a_malformed_time_is_left_out_with_a_warning() -> None:
    message = read(PID, "OBR|1|PL1|FI1|58410-2^CBC^LN|||DATE!")
    assert message.reports[0].effective == ""
    assert any(str(i.location) == "OBR[1]-7" for i in message.issues)


@pytest.mark.parametrize(
    ("type_", "version", "code"),
    [
        ("ADT^A01", "2.5.1", ErrorCode.UNSUPPORTED_MESSAGE_TYPE),
        ("ORU^R30", "2.5.1", ErrorCode.UNSUPPORTED_EVENT),
        ("ORU^R01", "2.2", ErrorCode.UNSUPPORTED_VERSION),
    ],
)
def test_unsupported_messages_are_rejected_with_the_reason(
    type_: str, version: str, code: ErrorCode
) -> None:
    with pytest.raises(UnsupportedError) as caught:
        read(PID, type_=type_, version=version)
    assert caught.value.issue.code is code


def test_empty_message_type_is_a_structure_error() -> None:
    with pytest.raises(StructureError) as caught:
        read(PID, type_="")
    assert str(caught.value.issue.location) == "MSH[1]-9"


@pytest.mark.parametrize("version", ["2.3", "2.5.1", "2.8", "2.9"])
def test_versions_from_2_3(version: str) -> None:
    assert read(PID, version=version).version == version

"""The opt-in ``--validate-structure`` check: hl7apy's verdict as warnings, never a crash."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from leukofhir.errors import ErrorCode, Issue, Location, Severity
from leukofhir.ingest import structure
from leukofhir.ingest.structure import validate_structure

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "sample_messages"

MSH = (
    "MSH|^~\\&|HEMALIS|RIVERBEND LAB|EHR|RIVERBEND MC|20250114083015-0500||ORU^R01^ORU_R01|"
    "C1|P|2.5.1"
)
PID = "PID|1||E4417203^^^RBRMC^MR||Castellanos^Lucia||19840317|F"
ORC = "ORC|RE|ORD1^EHR|RB25-1^LAB||CM||||20250114071200-0500"
OBR = (
    "OBR|1|ORD1^EHR|RB25-1^LAB|57021-8^CBC W Auto Differential panel - Blood^LN|||"
    "20250114071200-0500|||||||||||||||20250114082958-0500||HM|F"
)
OBX_WBC = (
    "OBX|1|NM|6690-2^Leukocytes [#/volume] in Blood by Automated count^LN||7.20|10*3/uL|"
    "4.3-10.8|N|||F|||20250114071200-0500"
)
OBX_PLT = (
    "OBX|2|NM|777-3^Platelets [#/volume] in Blood by Automated count^LN||248|10*3/uL|"
    "150-400|N|||F|||20250114071200-0500"
)
VALID = [MSH, PID, ORC, OBR, OBX_WBC, OBX_PLT]

# hl7apy's tables are narrower than HL7 practice; these warnings are documented in the module
DOCUMENTED = (
    re.compile(r"value '(UCUM|SCT|HL70487|99[A-Z0-9]+|CLIA)' is not in HL7 table 0396$"),
    re.compile(r"value '(CLIA|L)' is not in HL7 table 0301$"),
    re.compile(r"(ORC\[\d+\]-7|OBR\[\d+\]-27): required field or component is empty$"),
)


def message(*segments: str) -> str:
    return "\r".join(segments)


def codes_at(issues: tuple[Issue, ...]) -> set[tuple[ErrorCode, str]]:
    return {(issue.code, str(issue.location)) for issue in issues}


def split_messages(path: Path) -> list[str]:
    text = path.read_bytes().decode("utf-8-sig").replace("\r\n", "\r").replace("\n", "\r")
    parts = [p for p in re.split(r"\r(?=MSH)", text) if p.strip()]
    return [p.split("\rBTS", 1)[0] for p in parts if p.startswith("MSH")]


def test_a_valid_cbc_message_has_no_issue() -> None:
    assert validate_structure(message(*VALID)) == ()


def test_every_issue_is_a_warning_never_an_error() -> None:
    broken = message(MSH, OBX_WBC, ORC, "ZZZ|1", "OBR|x")
    issues = validate_structure(broken)
    assert issues
    assert {issue.severity for issue in issues} == {Severity.WARNING}


@pytest.mark.parametrize(
    "name",
    [
        "01-normal-cbc-5-part-diff.hl7",
        "02-leukopenia-g1-wbc-3p0.hl7",
        "08-eosinophilia-basophilia.hl7",
        "23-oul-r22-cbc.hl7",
        "26-local-codes-loinc-in-cwe4.hl7",
    ],
)
def test_valid_sample_messages_give_only_the_documented_warnings(name: str) -> None:
    for text in split_messages(SAMPLES / name):
        for issue in validate_structure(text):
            assert issue.severity is Severity.WARNING
            documented = any(p.search(issue.message) for p in DOCUMENTED)
            lege = name.startswith("08") and "'lege' is not in HL7 table 0360" in issue.message
            assert documented or lege, issue.message


def test_oul_r22_order_with_orc_after_obr_is_not_out_of_order() -> None:
    for text in split_messages(SAMPLES / "23-oul-r22-cbc.hl7"):
        issues = validate_structure(text)
        assert not [i for i in issues if "out of order" in i.message]
        assert "OUL_R22" in issues[0].message


def test_missing_pid_is_a_warning_at_pid() -> None:
    issues = validate_structure(message(MSH, ORC, OBR, OBX_WBC))
    assert (ErrorCode.SEGMENT_SEQUENCE, "PID") in codes_at(issues)
    assert all(issue.severity is Severity.WARNING for issue in issues)


def test_results_before_their_order_are_out_of_order() -> None:
    issues = validate_structure(message(MSH, PID, OBX_WBC, ORC, OBR))
    found = codes_at(issues)
    assert (ErrorCode.SEGMENT_SEQUENCE, "ORC[1]") in found
    assert any("out of order" in i.message and "OBX[1]" in i.message for i in issues)


def test_pid_after_the_order_is_out_of_order() -> None:
    issues = validate_structure(message(MSH, ORC, OBR, PID, OBX_WBC))
    assert (ErrorCode.SEGMENT_SEQUENCE, "PID[1]") in codes_at(issues)


def test_a_segment_hl7apy_cannot_place_is_reported_not_dropped() -> None:
    issues = validate_structure(message(*VALID, "ZLB|1|local", "NTE|1|L|after Z"))
    assert (ErrorCode.SEGMENT_SEQUENCE, "ZLB[1]") in codes_at(issues)


def test_a_problem_inside_a_segment_is_located_with_its_sequence() -> None:
    bad_flag = OBX_PLT.replace("|N|||F|", "|QQ|||F|")
    issues = validate_structure(message(MSH, PID, ORC, OBR, OBX_WBC, bad_flag))
    table = [i for i in issues if i.code is ErrorCode.TABLE_VALUE_NOT_FOUND]
    assert [str(i.location) for i in table] == ["OBX[2]-8"]
    assert table[0].location == Location("OBX", 2, 8)
    assert "0078" in table[0].message


def test_the_same_problem_in_many_segments_is_one_issue() -> None:
    coded = [
        OBX_WBC.replace("|10*3/uL|", "|10*3/uL^10*3/uL^UCUM|"),
        OBX_PLT.replace("|10*3/uL|", "|10*3/uL^10*3/uL^UCUM|"),
    ]
    issues = validate_structure(message(MSH, PID, ORC, OBR, *coded))
    ucum = [i for i in issues if "'UCUM'" in i.message]
    assert len(ucum) == 1
    assert ucum[0].location == Location("OBX", 1, 6, 3)
    assert "OBX[1-2]-6.3" in ucum[0].message


@pytest.mark.parametrize(
    "garbage",
    [
        "",
        "hello world",
        "\x00\x01\x02MSH|",
        "MSH|",
        "MSH|^~",
        "MSH|LABSYS|LAKESHORE|X",
        "PID|1||123",
        "MSH|^~\\&|" + "|" * 5000,
        "MSH|^~\\&|A|B|C|D|E||ORU^R01|1|P|2.5.1\r" + "OBX|" * 200,
        "MSH|^~\\&|A|B|C|D|E||ORU^R01|1|P|2.5.1\r400|||\rcli|x\r\r\r",
        "MSH|^~\\&|A|B|C|D|E||ORU^R01|1|P|2.5.1\rPRT|1\rPID|1",
        "MSH|^~\\&|A|B|C|D|E||^^|1|P|2.5.1\rPID|1",
        "MSH|^~\\&|A|B|C|D|E||ZZZ^Z99|1|P|2.5.1\rPID|1",
    ],
)
def test_garbage_gives_warnings_not_exceptions(garbage: str) -> None:
    issues = validate_structure(garbage)
    assert issues
    assert all(issue.severity is Severity.WARNING for issue in issues)
    assert all(issue.code is not ErrorCode.INTERNAL_ERROR for issue in issues), issues


def test_text_that_is_not_hl7_says_so_at_msh() -> None:
    (issue,) = validate_structure("this is not a message")
    assert issue.location == Location("MSH", 1)
    assert issue.code is ErrorCode.SEGMENT_SEQUENCE


def test_unusable_encoding_characters_stop_the_check_with_one_warning() -> None:
    (issue,) = validate_structure(MSH.replace("^~\\&", "LABS") + "\r" + PID)
    assert (issue.code, str(issue.location)) == (ErrorCode.DATA_TYPE, "MSH[1]-2")


def test_version_hl7apy_does_not_know_is_checked_against_2_5_1() -> None:
    issues = validate_structure(message(MSH.replace("|2.5.1", "|2.9"), *VALID[1:]))
    assert (ErrorCode.UNSUPPORTED_VERSION, "MSH[1]-12") in codes_at(issues)
    assert len(issues) == 1
    assert structure.FALLBACK_VERSION in issues[0].message


def test_empty_version_is_checked_against_2_5_1() -> None:
    issues = validate_structure(message(MSH.replace("|2.5.1", "|"), *VALID[1:]))
    assert codes_at(issues) == {(ErrorCode.REQUIRED_FIELD_MISSING, "MSH[1]-12")}


def test_truncation_character_before_2_7_is_reported_and_the_rest_still_checked() -> None:
    issues = validate_structure(message(MSH.replace("^~\\&", "^~\\&#"), *VALID[1:]))
    assert codes_at(issues) == {(ErrorCode.DATA_TYPE, "MSH[1]-2")}
    late = validate_structure(message(MSH.replace("^~\\&", "^~\\&#"), *VALID[1:], "ZZZ|1"))
    assert (ErrorCode.SEGMENT_SEQUENCE, "ZZZ[1]") in codes_at(late)


def test_empty_message_type_checks_segments_only() -> None:
    issues = validate_structure(message(MSH.replace("ORU^R01^ORU_R01", ""), *VALID[1:]))
    assert (ErrorCode.REQUIRED_FIELD_MISSING, "MSH[1]-9") in codes_at(issues)
    assert len([i for i in issues if str(i.location) == "MSH[1]-9"]) == 1


def test_unknown_message_structure_is_a_warning_and_segments_are_still_checked() -> None:
    bad_flag = OBX_WBC.replace("|N|||F|", "|QQ|||F|")
    issues = validate_structure(message(MSH.replace("ORU^R01^ORU_R01", "ZZZ^Z99"), PID, bad_flag))
    found = codes_at(issues)
    assert (ErrorCode.UNSUPPORTED_MESSAGE_TYPE, "MSH[1]-9") in found
    assert (ErrorCode.TABLE_VALUE_NOT_FOUND, "OBX[1]-8") in found


def test_line_endings_and_bom_are_tolerated() -> None:
    expected = validate_structure(message(*VALID))
    assert validate_structure("\ufeff" + "\n".join(VALID) + "\n") == expected
    assert validate_structure("\r\n".join(VALID)) == expected


def test_an_exception_inside_hl7apy_becomes_a_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    def explode(*_args: object, **_kwargs: object) -> object:
        raise RuntimeError("boom")

    monkeypatch.setattr(structure, "parse_message", explode)
    (issue,) = validate_structure(message(*VALID))
    assert issue.severity is Severity.WARNING
    assert issue.code is ErrorCode.INTERNAL_ERROR
    assert issue.issue_type == "exception"
    assert "RuntimeError" in issue.message


def test_an_exception_in_the_check_itself_becomes_a_warning(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def explode(_self: object) -> list[Issue]:
        raise KeyError("oops")

    monkeypatch.setattr(structure._Check, "run", explode)
    (issue,) = validate_structure(message(*VALID))
    assert (issue.severity, issue.code) == (Severity.WARNING, ErrorCode.INTERNAL_ERROR)


def test_validator_failure_without_report_becomes_a_warning(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from hl7apy.validation import Validator  # the tests may touch hl7apy; src may not

    def explode(*_args: object, **_kwargs: object) -> None:
        raise AttributeError("reference")

    monkeypatch.setattr(Validator, "validate", staticmethod(explode))
    issues = validate_structure(message(*VALID))
    assert issues
    assert all(issue.severity is Severity.WARNING for issue in issues)


@pytest.mark.parametrize("path", sorted(SAMPLES.glob("*.hl7")), ids=lambda p: p.name)
def test_every_sample_message_is_checked_without_an_internal_error(path: Path) -> None:
    for text in split_messages(path) or [path.read_text(encoding="utf-8-sig")]:
        for issue in validate_structure(text):
            assert issue.severity is Severity.WARNING
            assert issue.code is not ErrorCode.INTERNAL_ERROR, issue.message


def test_hl7apy_is_imported_only_by_the_structure_module() -> None:
    source = ROOT / "src" / "leukofhir"
    importers = sorted(
        path.relative_to(source).as_posix()
        for path in source.rglob("*.py")
        if re.search(r"^\s*(import|from)\s+hl7apy", path.read_text(encoding="utf-8"), re.M)
    )
    assert importers == ["ingest/structure.py"]

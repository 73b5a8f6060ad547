"""parse_message and decode_escapes: separators, segments, fields, escapes, charsets, errors."""

from __future__ import annotations

import codecs
import contextlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from leukofhir.errors import (
    ErrorCode,
    FramingError,
    LeukofhirError,
    Location,
    Severity,
)
from leukofhir.ingest import charset
from leukofhir.ingest.er7 import Er7Message, Separators, decode_escapes, parse_message
from leukofhir.ingest.framing import split_messages

CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "corpus" / "hl7v2"
DEFAULT = Separators()

CBC = "\r".join(
    [
        "MSH|^~\\&|LIS|LAB|EHR|HOSP|20240102103000+0100||ORU^R01^ORU_R01|C1|P|2.5.1",
        "PID|1||123^^^HOSP^MR~456^^^SSA^SS||DOE^JANE",
        "OBR|1|ORD1||58410-2^CBC^LN",
        "OBX|1|NM|6690-2^WBC^LN||3.1|10*3/uL|4.0-10.0|L|||F",
        "OBX|2|NM|789-8^RBC^LN||4.5|10*6/uL&&UCUM|4.2-5.4|N~A|||F",
        "NTE|1||Low \\T\\ falling\\.br\\repeat in 2 weeks",
    ]
).encode()


def parse(text: str) -> Er7Message:
    return parse_message(text.encode("utf-8"))


def framing_error(data: bytes) -> FramingError:
    with pytest.raises(FramingError) as caught:
        parse_message(data)
    return caught.value


# --------------------------------------------------------------------------- segments


def test_segments_names_sequences_and_raw_fields() -> None:
    message = parse_message(CBC)
    assert [s.name for s in message.segments] == ["MSH", "PID", "OBR", "OBX", "OBX", "NTE"]
    second_obx = message.segments[4]
    assert second_obx.sequence == 2
    assert second_obx.location == Location("OBX", 2)
    assert str(second_obx.location.at(5)) == "OBX[2]-5"
    assert second_obx.fields[:4] == ("OBX", "2", "NM", "789-8^RBC^LN")
    assert second_obx.raw(6) == "10*6/uL&&UCUM"
    assert second_obx.raw(99) == ""
    assert second_obx.raw(-1) == ""
    assert message.charset == "utf-8"
    assert message.issues == ()
    assert message.separators == DEFAULT
    assert message.msh is message.segments[0]
    assert message.first("OBX") is message.segments[3]
    assert message.first("SPM") is None


def test_msh_field_numbers_match_the_standard() -> None:
    msh = parse_message(CBC).msh
    assert msh.fields[:4] == ("MSH", "|", "^~\\&", "LIS")
    assert msh.get(1) == "|"
    assert msh.get(2) == "^~\\&"  # as sent, not split on ~ nor unescaped
    assert msh.get(2, 2) == ""
    assert msh.repetitions(2) == ("^~\\&",)
    assert msh.components(2) == ("^~\\&",)
    assert msh.components(1, repetition=2) == ()
    assert msh.get(9, 1) == "ORU"
    assert msh.get(9, 3) == "ORU_R01"
    assert msh.get(10) == "C1"
    assert msh.get(0) == "MSH"


def test_get_components_subcomponents_and_repetitions() -> None:
    message = parse_message(CBC)
    pid = message.segments[1]
    assert pid.repetitions(3) == ("123^^^HOSP^MR", "456^^^SSA^SS")
    assert pid.get(3) == "123"
    assert pid.get(3, 4, repetition=2) == "SSA"
    assert pid.get(3, 4, repetition=3) == ""
    assert pid.get(3, 2) == ""
    assert pid.get(3, 0) == ""
    assert pid.get(5, 2) == "JANE"
    obx = message.segments[4]
    assert obx.get(6, 1, 3) == "UCUM"
    assert obx.get(6, 1, 2) == ""
    assert obx.get(6, 1, 4) == ""
    assert obx.get(8, repetition=2) == "A"
    assert obx.components(3) == ("789-8", "RBC", "LN")
    assert obx.components(6) == ("10*6/uL",)  # first subcomponent only
    assert obx.components(8, repetition=2) == ("A",)
    assert obx.components(9) == ()
    assert obx.repetitions(9) == ()
    assert obx.repetitions(40) == ()


def test_get_and_components_decode_escapes_after_splitting() -> None:
    message = parse("MSH|^~\\&\rOBX|1|ST|X^a\\S\\b\\T\\c^Y||v\\R\\w~x\\F\\y")
    obx = message.segments[1]
    assert obx.raw(3) == "X^a\\S\\b\\T\\c^Y"
    assert obx.get(3, 2) == "a^b&c"
    assert obx.components(3) == ("X", "a^b&c", "Y")
    assert obx.get(5) == "v~w"
    assert obx.get(5, repetition=2) == "x|y"
    assert obx.repetitions(5) == ("v\\R\\w", "x\\F\\y")


@pytest.mark.parametrize("end", ["\r", "\n", "\r\n"])
def test_segment_ends(end: str) -> None:
    message = parse(end.join(["MSH|^~\\&|A", "PID|1", "", "OBX|1", ""]))
    assert [s.name for s in message.segments] == ["MSH", "PID", "OBX"]
    assert message.issues == ()


def test_mixed_segment_ends_and_blank_lines_are_skipped() -> None:
    message = parse("MSH|^~\\&|A\r\nPID|1\n\n   \r\rOBX|1\r")
    assert [s.name for s in message.segments] == ["MSH", "PID", "OBX"]
    assert message.issues == ()


def test_segment_with_name_only() -> None:
    message = parse("MSH|^~\\&\rZZ1\rPID|")
    assert message.segments[1].fields == ("ZZ1",)
    assert message.segments[2].fields == ("PID", "")


@pytest.mark.parametrize(
    "line", ["free text after a break", "pid|1", "OBXX|1", "OB|1", " PID|1", "OBX^1", "ÄBC|1"]
)
def test_a_line_that_is_not_a_segment_is_skipped_with_a_warning(line: str) -> None:
    message = parse(f"MSH|^~\\&\rPID|1\r\n{line}\rOBX|1")
    assert [s.name for s in message.segments] == ["MSH", "PID", "OBX"]
    (issue,) = message.issues
    assert issue.severity is Severity.WARNING
    assert issue.code is ErrorCode.SEGMENT_SEQUENCE
    assert issue.message.startswith("line 3 is not an HL7 segment")
    assert line not in issue.message  # never echo content: it may be patient data


def test_a_second_msh_inside_one_message_is_numbered_like_msh() -> None:
    message = parse("MSH|^~\\&|A\rMSH|^~\\&|B")
    assert message.segments[1].fields == ("MSH", "|", "^~\\&", "B")
    assert message.segments[1].sequence == 2


def test_leading_blanks_mllp_and_bom_are_tolerated() -> None:
    message = parse_message(b"\x0b\xef\xbb\xbf\r\n" + CBC)
    assert len(message.segments) == 6


# --------------------------------------------------------------------------- separators


def test_non_default_separators() -> None:
    message = parse("MSH$*@!%$LIS$LAB\rOBX$1$CWE$a*b@c*d%e$$x!F!y!S!z!T!w")
    assert message.separators == Separators("$", "*", "@", "!", "%")
    obx = message.segments[1]
    assert obx.fields == ("OBX", "1", "CWE", "a*b@c*d%e", "", "x!F!y!S!z!T!w")
    assert obx.get(3, 2) == "b"
    assert obx.get(3, 2, repetition=2) == "d"
    assert obx.get(3, 2, 2, repetition=2) == "e"
    assert obx.get(5) == "x$y*z%w"
    assert message.msh.get(1) == "$"
    assert message.msh.get(2) == "*@!%"


def test_fifth_encoding_character_is_truncation() -> None:
    message = parse("MSH|^~\\&#|A\rNTE|1||cut\\P\\ here # kept")
    assert message.separators == Separators(truncation="#")
    assert message.msh.get(2) == "^~\\&#"
    assert message.segments[1].get(3) == "cut# here # kept"
    assert message.issues == ()


def test_escape_character_written_twice_is_read_once() -> None:
    message = parse("MSH|^~\\\\&|A|B\rNTE|1||a\\T\\b")
    assert message.separators == DEFAULT
    assert message.msh.get(2) == "^~\\\\&"  # as sent
    assert message.msh.get(3) == "A"
    assert message.segments[1].get(3) == "a&b"
    (issue,) = message.issues
    assert issue.location == Location("MSH", 1, 2)
    assert issue.severity is Severity.WARNING


def test_escape_written_twice_with_truncation_character() -> None:
    assert parse("MSH|^~\\\\&#|A").separators == Separators(truncation="#")


@pytest.mark.parametrize(
    ("encoding", "expected"),
    [
        ("^~\\", Separators()),
        ("^~", Separators()),
        ("^", Separators()),
        ("$*", Separators("|", "$", "*", "\\", "&")),
    ],
)
def test_short_msh_2_takes_defaults_when_unambiguous(encoding: str, expected: Separators) -> None:
    message = parse(f"MSH|{encoding}|A")
    assert message.separators == expected
    assert message.msh.get(2) == encoding
    assert message.msh.get(3) == "A"
    (issue,) = message.issues
    assert issue.location == Location("MSH", 1, 2)
    assert "fewer than four" in issue.message


@pytest.mark.parametrize(
    ("data", "location", "words"),
    [
        (b"", Location("MSH", 1), "empty"),
        (b"   \r\n", Location("MSH", 1), "empty"),
        (b"PID|1|2", Location("MSH", 1), "'PID' segment"),
        (b"hello world", Location("MSH", 1), "not a segment"),
        (b"\xff\xfeM\x00S\x00H\x00", Location("MSH", 1), "not a segment"),
        (b"MSH", Location("MSH", 1, 1), "MSH-1"),
        (b"MSH\rPID|1", Location("MSH", 1, 1), "MSH-1"),
        (b"MSHA^~\\&A", Location("MSH", 1, 1), "'A'"),
        (b"MSH ^~\\& ", Location("MSH", 1, 1), "' '"),
        (b"MSH|", Location("MSH", 1, 2), "MSH-2"),
        (b"MSH||A|B", Location("MSH", 1, 2), "MSH-2"),
        (b"MSH|^~\\&#!|A", Location("MSH", 1, 2), "at most five"),
        (b"MSH|SENDER|FAC", Location("MSH", 1, 2), "at most five"),
        (b"MSH|^~X&|A", Location("MSH", 1, 2), "'X'"),
        (b"MSH|^^\\&|A", Location("MSH", 1, 2), "twice"),
        (b"MSH&^~\\&A", Location("MSH", 1, 2), "twice"),  # default '&' is the field separator
        (b"MSH|^~&|A", Location("MSH", 1, 2), "twice"),  # default '&' would collide
        (b"MSH|^~\\&|||", Location("MSH", 1, 2), None),
    ],
)
def test_framing_errors_are_located_and_actionable(
    data: bytes, location: Location, words: str | None
) -> None:
    if words is None:  # the control case: this one is fine
        parse_message(data)
        return
    error = framing_error(data)
    assert error.issue.location == location
    assert error.issue.severity is Severity.ERROR
    assert words in error.issue.message
    assert str(error).startswith(str(location))


def test_no_msh_error_does_not_echo_content() -> None:
    error = framing_error(b"PID|1||SECRET-ID^^^HOSP")
    assert "SECRET" not in error.issue.message


# --------------------------------------------------------------------------- charsets


def test_msh_18_latin_1_is_used() -> None:
    data = "MSH|^~\\&|||||||||2.5|||||||8859/1\rOBX|1|NM|x||5|µmol/L".encode("latin-1")
    message = parse_message(data)
    assert message.charset == "latin-1"
    assert message.segments[1].get(6) == "µmol/L"
    assert message.issues == ()


def test_msh_18_first_repetition_counts() -> None:
    data = "MSH|^~\\&|||||||||2.5|||||||8859/1~ISO IR87\rOBX|1|ST|x||é".encode("latin-1")
    assert parse_message(data).charset == "latin-1"


def test_utf_8_is_the_default() -> None:
    message = parse("MSH|^~\\&|A\rOBX|1|ST|x||µ é ✓")
    assert message.charset == "utf-8"
    assert message.segments[1].get(5) == "µ é ✓"


def test_invalid_utf_8_falls_back_to_latin_1_with_a_warning() -> None:
    data = b"MSH|^~\\&|A\rOBX|1|ST|x||caf\xe9"
    message = parse_message(data)
    assert message.charset == "latin-1"
    assert message.segments[1].get(5) == "café"
    (issue,) = message.issues
    assert issue.location == Location("MSH", 1, 18)
    assert issue.code is ErrorCode.DATA_TYPE
    assert issue.severity is Severity.WARNING
    assert f"byte {len(data) - 1} " in issue.message
    assert "ISO 8859-1" in issue.message


def test_fallback_offset_counts_stripped_leading_bytes() -> None:
    data = b"\r\nMSH|^~\\&|A\rOBX|1|ST|x||\xff"
    (issue,) = parse_message(data).issues
    assert f"byte {len(data) - 1} " in issue.message


def test_ascii_declared_but_not_ascii_falls_back() -> None:
    data = b"MSH|^~\\&|||||||||2.5|||||||ASCII\rOBX|1|ST|x||\xb5g"
    message = parse_message(data)
    assert message.charset == "latin-1"
    assert message.segments[1].get(5) == "µg"
    assert "'ASCII'" in message.issues[0].message


def test_single_byte_declared_but_utf_8_sent_is_read_as_utf_8() -> None:
    data = "MSH|^~\\&|||||||||2.5|||||||8859/1\rOBX|1|ST|x||2.0 µg/mL".encode()
    message = parse_message(data)
    assert message.charset == "utf-8"
    assert message.segments[1].get(5) == "2.0 µg/mL"
    (issue,) = message.issues
    assert issue.location == Location("MSH", 1, 18)
    assert "valid UTF-8" in issue.message


def test_unknown_charset_warns_and_reads_utf_8() -> None:
    message = parse("MSH|^~\\&|||||||||2.5|||||||KLINGON\rOBX|1|ST|x||µ")
    assert message.charset == "utf-8"
    (issue,) = message.issues
    assert issue.location == Location("MSH", 1, 18)
    assert "'KLINGON'" in issue.message


@pytest.mark.parametrize(
    ("name", "codec"),
    [
        ("", "utf-8"),
        ("ASCII", "ascii"),
        ("8859/1", "latin-1"),
        ("8859/15", "iso8859-15"),
        ("UNICODE UTF-8", "utf-8"),
        ("unicode  utf-8 ", "utf-8"),
        ("ISO IR6", "ascii"),
        ("ISO IR100", "latin-1"),
        ("UTF-8", "utf-8"),
        ("UNICODE UTF-16", None),
        ("CNS 11643-1992", None),
    ],
)
def test_codec_for(name: str, codec: str | None) -> None:
    assert charset.codec_for(name) == codec


def test_every_mapped_codec_exists() -> None:
    for name in [*charset._TABLE_0211, *charset._ALIASES]:
        codec = charset.codec_for(name)
        assert codec is not None
        codecs.lookup(codec)


# --------------------------------------------------------------------------- escapes

TRUNCATING = Separators(truncation="#")


@pytest.mark.parametrize(
    ("text", "decoded"),
    [
        ("plain", "plain"),
        ("", ""),
        ("a\\F\\b\\S\\c\\T\\d\\R\\e\\E\\f", "a|b^c&d~e\\f"),
        ("\\X0D0A\\", "\r\n"),
        ("\\X0d0a\\", "\r\n"),  # lower-case hex (rs__hci.hl7)
        ("\\XC2B5\\mol", "µmol"),  # UTF-8 bytes
        ("\\XB5\\mol", "µmol"),  # not UTF-8: latin-1
        ("\\X41\\\\X42\\", "AB"),
        ("line\\.br\\next", "line\nnext"),
        ("\\.sp\\", "\n"),
        ("\\.sp 2\\", "\n\n"),
        ("\\.sp3\\", "\n\n\n"),
        ("\\.sp 0\\", "\n"),
        ("\\.sp 99999\\", "\n" * 99),  # capped
        ("\\.ce\\Title", "\nTitle"),
        ("\\.fi\\a\\.nf\\b", "ab"),
        ("\\.in 4\\x", "    x"),
        ("\\.in +2\\x", "  x"),
        ("\\.in -4\\x", "x"),
        ("\\.ti 2\\x", "  x"),
        ("\\.in\\x", "x"),
        ("a\\.sk\\b", "a b"),
        ("a\\.sk 3\\b", "a   b"),
        ("\\H\\bold\\N\\ normal", "bold normal"),
        ("\\Zabc\\kept", "kept"),
        ("\\C2842\\abc", "abc"),
        ("\\M2442\\abc\\M244200\\", "abc"),
        ("\\P\\", "\\P\\"),  # no truncation character declared
        # kept literally:
        ("C:\\temp", "C:\\temp"),  # unterminated
        ("a\\Q\\b", "a\\Q\\b"),  # unknown
        ("a\\\\b", "a\\\\b"),  # empty
        ("\\X\\", "\\X\\"),
        ("\\X0\\", "\\X0\\"),  # odd number of hex digits
        ("\\XGG\\", "\\XGG\\"),
        ("\\X0D 0A\\", "\\X0D 0A\\"),
        ("\\.br2\\", "\\.br2\\"),
        ("\\.spx\\", "\\.spx\\"),
        ("\\.xx\\", "\\.xx\\"),
        ("\\C28\\", "\\C28\\"),
        ("\\f\\", "\\f\\"),  # escape letters are upper case
        ("a\\F\\b\\", "a|b\\"),
        ("\\F\\F\\", "|F\\"),  # read left to right
    ],
)
def test_decode_escapes(text: str, decoded: str) -> None:
    assert decode_escapes(text, DEFAULT) == decoded


def test_truncation_escape() -> None:
    assert decode_escapes("a\\P\\b", TRUNCATING) == "a#b"


def test_escapes_with_other_separators() -> None:
    separators = Separators("$", "*", "@", "!", "%")
    assert decode_escapes("!F!!S!!T!!R!!E!\\F\\", separators) == "$*%@!\\F\\"
    assert decode_escapes("!X41!", separators) == "A"


def test_escape_character_that_is_special_in_regular_expressions() -> None:
    for escape in "^$.[]()*+?{}-":
        separators = Separators("|", "!" if escape != "!" else "'", "~", escape, "&")
        assert decode_escapes(f"a{escape}F{escape}b{escape}", separators) == f"a|b{escape}"


def test_text_without_escape_is_returned_unchanged() -> None:
    text = "nothing to decode here"
    assert decode_escapes(text, DEFAULT) is text


def test_unknown_or_unterminated_escape_gives_a_located_warning() -> None:
    message = parse("MSH|^~\\&|A\rOBX|1|ST|x||ok\\T\\\rNTE|1||C:\\temp\rNTE|2||\\Q\\")
    assert [issue.location for issue in message.issues] == [
        Location("NTE", 1, 3),
        Location("NTE", 2, 3),
    ]
    assert all(issue.severity is Severity.WARNING for issue in message.issues)
    assert "temp" not in message.issues[0].message


# --------------------------------------------------------------------------- corpus


@pytest.mark.skipif(not CORPUS.exists(), reason="../shared/corpus/hl7v2 is not here")
def test_corpus_odd_features() -> None:
    def read(name: str) -> Er7Message:
        (raw,) = split_messages((CORPUS / name).read_bytes())
        return parse_message(raw.data)

    hci = read("rs__hci.hl7")
    assert hci.separators.truncation == "#"
    nte = next(s for s in hci.segments if s.name == "NTE" and "X0d0a" in s.raw(3))
    assert "\\X0d0a\\" not in nte.get(3)
    assert "\r\n" in nte.get(3)

    micro = read("ti__008_ORU_R01_micro_character_encoding.hl7")
    assert any("µmol/L" in s.get(6) for s in micro.segments if s.name == "OBX")

    windows = read("lfh__sample_win.hl7")
    assert windows.separators == DEFAULT
    assert windows.msh.get(9) == "ADT"

    elims = read("rs__elims_29_CANCELED.hl7")
    assert elims.charset == "utf-8"
    assert any(issue.location == Location("MSH", 1, 18) for issue in elims.issues)

    with pytest.raises(FramingError):
        read("ti__msh_present_but_missing_all_fields.hl7")


# --------------------------------------------------------------------------- properties


@settings(max_examples=400)
@given(st.binary(max_size=300))
def test_parse_message_raises_only_leukofhir_errors_on_any_bytes(data: bytes) -> None:
    with contextlib.suppress(LeukofhirError):
        parse_message(data)


HEADER_BYTES = st.sampled_from(
    [b"MSH|^~\\&|", b"MSH|^~\\&#|", b"MSH|^~\\\\&|", b"MSH$*@!%$", b"MSH|", b"MSH|^|", b"MSH"]
)
BODY_BYTES = st.lists(
    st.sampled_from(
        [
            b"|",
            b"^",
            b"~",
            b"\\",
            b"&",
            b"#",
            b"\r",
            b"\n",
            b"PID",
            b"OBX",
            b"X0d",
            b".sp",
            b"F",
            b"\xff",
            b"\xc2\xb5",
            b"8859/1",
            b"a",
            b" ",
        ]
    ),
    max_size=60,
).map(b"".join)


@settings(max_examples=400)
@given(HEADER_BYTES, BODY_BYTES)
def test_parse_message_never_crashes_on_near_messages(header: bytes, body: bytes) -> None:
    try:
        message = parse_message(header + body)
    except LeukofhirError:
        return
    for segment in message.segments:
        for number in range(len(segment.fields) + 1):
            segment.get(number, 2, 2, 2)
            segment.components(number)
            segment.repetitions(number)


@settings(max_examples=300)
@given(
    st.text(max_size=60),
    st.sampled_from([DEFAULT, TRUNCATING, Separators("$", "*", "@", "!", "%")]),
)
def test_decode_escapes_never_raises(text: str, separators: Separators) -> None:
    decode_escapes(text, separators)


@settings(max_examples=200)
@given(st.text(alphabet=st.characters(exclude_characters="\\"), max_size=40))
def test_text_without_escape_character_round_trips(text: str) -> None:
    assert decode_escapes(text, DEFAULT) == text

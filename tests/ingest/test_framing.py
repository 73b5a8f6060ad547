"""split_messages: MLLP, BOM, line ends, concatenation, batch envelopes, garbage, any bytes."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from leukofhir.ingest.framing import RawMessage, split_messages

CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "corpus" / "hl7v2"

MSG_A = b"MSH|^~\\&|LIS|LAB|||20240101||ORU^R01|A1|P|2.5.1\rPID|1||42\rOBX|1|NM|6690-2^WBC^LN||3.1"
MSG_B = b"MSH|^~\\&|LIS|LAB|||20240101||ORU^R01|B2|P|2.5.1\rPID|1||43"
BOM = b"\xef\xbb\xbf"


def datas(data: bytes) -> list[bytes]:
    return [message.data for message in split_messages(data)]


@pytest.mark.parametrize("data", [b"", b"   ", b"\r\n\r\n", b"\t \x0b\x1c\r", BOM, BOM + b"\r\n"])
def test_blank_input_yields_nothing(data: bytes) -> None:
    assert datas(data) == []


def test_single_message_is_returned_whole_without_trailing_line_ends() -> None:
    assert list(split_messages(MSG_A + b"\r\r\n")) == [RawMessage(MSG_A, 0, 0)]


def test_mllp_frames_are_removed() -> None:
    data = b"\x0b" + MSG_A + b"\r\x1c\r" + b"\x0b" + MSG_B + b"\r\x1c\r"
    messages = list(split_messages(data))
    assert [m.data for m in messages] == [MSG_A, MSG_B]
    assert [m.offset for m in messages] == [1, len(MSG_A) + 5]
    assert [m.index for m in messages] == [0, 1]
    assert data[messages[1].offset :].startswith(MSG_B)


def test_mllp_frames_back_to_back_without_cr() -> None:
    data = b"\x0b" + MSG_A + b"\x1c\x0b" + MSG_B + b"\x1c"
    assert datas(data) == [MSG_A, MSG_B]


def test_leading_bom_is_removed_and_offset_points_after_it() -> None:
    assert list(split_messages(BOM + MSG_A)) == [RawMessage(MSG_A, 3, 0)]


def test_bom_right_after_mllp_start_block() -> None:
    assert list(split_messages(b"\x0b" + BOM + MSG_A + b"\x1c\r")) == [RawMessage(MSG_A, 4, 0)]


def test_bom_at_the_start_of_each_concatenated_file() -> None:
    assert datas(BOM + MSG_A + b"\r\n" + BOM + MSG_B + b"\r\n") == [MSG_A, MSG_B]


@pytest.mark.parametrize("end", [b"\r", b"\n", b"\r\n"])
def test_every_line_end_splits_concatenated_messages(end: bytes) -> None:
    a, b = MSG_A.replace(b"\r", end), MSG_B.replace(b"\r", end)
    assert datas(a + end + b + end) == [a, b]


def test_mixed_line_ends_are_kept_inside_a_message() -> None:
    a = b"MSH|^~\\&|X\r\nPID|1\nOBX|1\r"
    assert datas(a + MSG_B) == [a.rstrip(b"\r\n"), MSG_B]


def test_msh_must_be_followed_by_a_separator_to_start_a_message() -> None:
    data = MSG_A + b"\rMSHX|not a header\rMSH\r" + MSG_B
    assert datas(data) == [MSG_A + b"\rMSHX|not a header\rMSH", MSG_B]


def test_msh_with_unusual_field_separator_starts_a_message() -> None:
    other = b"MSH$*@!%$LIS$LAB"
    assert datas(MSG_A + b"\r" + other) == [MSG_A, other]


def test_msh_inside_a_line_does_not_start_a_message() -> None:
    data = MSG_A + b"\rNTE|1||see MSH|^~\\& above"
    assert datas(data) == [data]


def test_batch_envelope_is_dropped() -> None:
    data = b"\r".join([b"FHS|^~\\&|LAB", b"BHS|^~\\&|LAB", MSG_A, MSG_B, b"BTS|2", b"FTS|1", b""])
    messages = list(split_messages(data))
    assert [m.data for m in messages] == [MSG_A, MSG_B]
    assert [m.index for m in messages] == [0, 1]
    assert data[messages[0].offset :].startswith(MSG_A)


@pytest.mark.parametrize(
    "trailer", [b"", b"BTS|2", b"BTS|2\nFTS|1", b"FTS|1", b"BTS", b"BTS\r\nFTS\r\n"]
)
def test_batch_with_or_without_trailers(trailer: bytes) -> None:
    data = b"\n".join([b"FHS|^~\\&", b"BHS|^~\\&", MSG_A, MSG_B, trailer])
    assert datas(data) == [MSG_A, MSG_B]


def test_envelope_name_must_end_there() -> None:
    data = MSG_A + b"\rBTSX|1"
    assert datas(data) == [data]


def test_garbage_before_first_msh_is_its_own_message() -> None:
    data = b"hello\r\nworld\r\n" + MSG_A + b"\r" + MSG_B
    messages = list(split_messages(data))
    assert [m.data for m in messages] == [b"hello\r\nworld", MSG_A, MSG_B]
    assert [m.offset for m in messages] == [0, 14, 15 + len(MSG_A)]
    assert [m.index for m in messages] == [0, 1, 2]


def test_garbage_after_batch_header_is_its_own_message() -> None:
    data = b"FHS|^~\\&\r\n  \r\nBHS|^~\\&\rjunk\r" + MSG_A + b"\rBTS|1\rFTS|1"
    assert datas(data) == [b"junk", MSG_A]


def test_garbage_after_a_message_stays_with_it() -> None:
    data = MSG_A + b"\rjunk line\r\r"
    assert datas(data) == [MSG_A + b"\rjunk line"]


def test_garbage_offset_skips_leading_blanks_and_bom() -> None:
    assert list(split_messages(b"\r\n " + BOM + b"junk")) == [RawMessage(b"junk", 6, 0)]


@pytest.mark.skipif(not CORPUS.exists(), reason="../shared/corpus/hl7v2 is not here")
@pytest.mark.parametrize(
    ("name", "count"),
    [
        ("rs__batch_message.hl7", 2),  # FHS/BHS, BTS but no FTS
        ("rs__sample-batch-pdi-20210608-0001.hl7", 20),  # full envelope, CR
        ("rs__Example-hl7-file.hl7", 1),
        ("rs__valid_mars.hl7", 2),  # concatenated, no envelope
        ("ti__005_AL_ORU_R01_NBS_Simplified.hl7", 1),  # FHS/BHS, no trailers
        ("msfc__LAB-ORU-1.hl7", 1),  # BOM
        ("ti__003_CA_ORU_R01_CDPH_NBS_crlf.hl7", 1),
        ("ti__empty.hl7", 0),
    ],
)
def test_corpus_message_counts(name: str, count: int) -> None:
    messages = list(split_messages((CORPUS / name).read_bytes()))
    assert len(messages) == count
    assert all(m.data.startswith(b"MSH") for m in messages)


# --------------------------------------------------------------------------- properties

SEGMENT_ENDS = st.sampled_from([b"\r", b"\n", b"\r\n"])
MESSAGES = st.lists(
    st.builds(
        lambda control_id, body: b"MSH|^~\\&|A|B|||2024||ORU^R01|" + control_id + b"\rPID|" + body,
        st.binary(min_size=1, max_size=8).map(lambda b: b.hex().encode()),
        st.text(alphabet="abc XYZ^&~|0123", max_size=30).map(str.encode),
    ),
    max_size=5,
)


@settings(max_examples=300)
@given(st.binary(max_size=400))
def test_never_raises_on_any_bytes(data: bytes) -> None:
    for message in split_messages(data):
        assert message.data
        assert data[message.offset :].startswith(message.data)


@settings(max_examples=300)
@given(
    st.lists(
        st.sampled_from(
            [b"MSH|", b"MSH", b"FHS|", b"BTS", b"\r", b"\n", b"\x0b", b"\x1c", BOM, b"x", b"|"]
        ),
        max_size=30,
    ).map(b"".join)
)
def test_never_raises_on_tricky_bytes(data: bytes) -> None:
    for message in split_messages(data):
        assert data[message.offset :].startswith(message.data)


@settings(max_examples=200)
@given(MESSAGES, SEGMENT_ENDS, st.booleans(), st.booleans(), st.booleans())
def test_concatenated_messages_come_back_in_order(
    messages: list[bytes], end: bytes, mllp: bool, batch: bool, bom: bool
) -> None:
    framed = [m.replace(b"\r", end) for m in messages]
    data = b"".join(b"\x0b" + m + b"\x1c\r" for m in framed) if mllp else end.join(framed)
    if batch:
        data = b"FHS|^~\\&" + end + b"BHS|^~\\&" + end + data + end + b"BTS|1" + end
    if bom:
        data = BOM + data
    found = list(split_messages(data))
    assert [m.data for m in found] == framed
    assert [m.index for m in found] == list(range(len(framed)))
    assert all(data[m.offset :].startswith(m.data) for m in found)

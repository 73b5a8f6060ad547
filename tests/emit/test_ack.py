"""The HL7 v2 ACK: header from the input, MSA-2 exact, one ERR per issue, escaping."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from leukofhir.emit.ack import acknowledgment_code, build_ack, encode_escapes
from leukofhir.ingest.er7 import Separators, decode_escapes, parse_message
from leukofhir.ingest.framing import RawMessage
from leukofhir.pipeline import process_message
from tests.conftest import SAMPLES, make_context

CONTEXT = make_context()


def ack_for(data: bytes) -> tuple[str, list[str]]:
    outcome = process_message(RawMessage(data, 0, 0), CONTEXT)
    code = acknowledgment_code(outcome)
    ack = build_ack(
        data, code, outcome.issues, control_id="ACK0001", timestamp="20260101000000+0000"
    )
    return code, ack.decode().rstrip("\r").split("\r")


def test_aa_with_the_header_swapped_and_msa_2_exact() -> None:
    data = (SAMPLES / "02-leukopenia-g1-wbc-3p0.hl7").read_bytes()
    code, segments = ack_for(data)
    assert code == "AA"
    sent = parse_message(data).msh
    ack = parse_message("\r".join(segments).encode()).msh
    assert (ack.raw(3), ack.raw(4), ack.raw(5), ack.raw(6)) == (
        sent.raw(5),
        sent.raw(6),
        sent.raw(3),
        sent.raw(4),
    )
    assert ack.get(9, 1) == "ACK"
    assert ack.get(9, 2) == sent.get(9, 2)
    assert ack.raw(10) == "ACK0001"
    assert (ack.raw(11), ack.raw(12)) == (sent.raw(11), sent.raw(12))
    assert segments[1] == f"MSA|AA|{sent.raw(10)}"


def test_unsupported_type_is_ar_with_a_located_err() -> None:
    code, segments = ack_for((SAMPLES / "19-wrong-message-type-adt.hl7").read_bytes())
    assert code == "AR"
    err = segments[2].split("|")
    assert err[0] == "ERR"
    assert err[2] == "MSH^1^9^1"
    assert err[3] == "200^Unsupported message type^HL70357"
    assert err[4] == "E"
    assert "ORU^R01" not in err[8]  # separators inside the text are escaped
    assert "ORU\\S\\R01" in err[8]


def test_content_error_is_ae() -> None:
    data = (SAMPLES / "20-good-bad-good.hl7").read_bytes()
    second = data.replace(b"\n", b"\r").split(b"MSH|")[2]
    code, segments = ack_for(b"MSH|" + second)
    assert code == "AE"
    assert segments[2].split("|")[3].startswith("101^")


def test_garbage_still_gets_an_ack() -> None:
    code, segments = ack_for(b"\x00\x01 not hl7")
    assert code == "AE"
    assert segments[0].startswith("MSH|^~\\&|")
    assert segments[1] == "MSA|AE|"


@given(st.text(alphabet=st.characters(blacklist_characters="\r", blacklist_categories=("Cs",))))
def test_escaping_round_trips(text: str) -> None:
    separators = Separators(truncation="#")
    assert decode_escapes(encode_escapes(text, separators), separators) == text

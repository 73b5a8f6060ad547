"""HL7 v2 acknowledgement (ACK) for one received message: OUTPUT.md §3, v2.5.1 §2.9.

Pure: the new control id and the timestamp are passed in.  The header is built from the
input's MSH (MSH-3/4 and MSH-5/6 swapped, ``ACK^<trigger>^ACK``, MSH-11/12 copied), MSA-2
echoes the input's MSH-10 exactly as sent, and every issue of the outcome becomes an ERR
segment (ERR-2 location, ERR-3 table 0357, ERR-4 severity, ERR-8 the readable message).
The service decides *when* to send it (AA only once the outcome is durably stored).
"""

from __future__ import annotations

from collections.abc import Sequence

from leukofhir.errors import ErrorCode, FramingError, Issue, Location, Severity
from leukofhir.ingest.er7 import Segment, Separators, parse_message
from leukofhir.pipeline import Disposition, MessageOutcome

__all__ = ["acknowledgment_code", "build_ack", "encode_escapes"]

# table 0357 codes that mean "not processed at all" (AR) rather than "content error" (AE)
_REFUSED = frozenset(
    {
        ErrorCode.UNSUPPORTED_MESSAGE_TYPE,
        ErrorCode.UNSUPPORTED_EVENT,
        ErrorCode.UNSUPPORTED_PROCESSING_ID,
        ErrorCode.UNSUPPORTED_VERSION,
        ErrorCode.INTERNAL_ERROR,
        ErrorCode.RECORD_LOCKED,
    }
)


def acknowledgment_code(outcome: MessageOutcome) -> str:
    """MSA-1 for an outcome: AA (processed or skipped), AR (not supported, or our fault),
    AE (the content is in error)."""
    if outcome.disposition is not Disposition.REJECTED:
        return "AA"
    serious = [i for i in outcome.issues if i.severity in (Severity.ERROR, Severity.FATAL)]
    return "AR" if any(issue.code in _REFUSED for issue in serious) else "AE"


def build_ack(
    message: bytes,
    code: str,
    issues: Sequence[Issue],
    *,
    control_id: str,
    timestamp: str,
) -> bytes:
    """The ACK message (segments ended by ``\\r``, no MLLP framing) for ``message``.

    ``timestamp`` is an HL7 DTM (``20260314093015+0100``); a message without a readable
    MSH is answered with default separators, version 2.5.1 and an empty MSA-2.
    """
    try:
        msh: Segment | None = parse_message(message).msh
    except FramingError:
        msh = None
    separators = msh.separators if msh is not None else Separators()
    f = separators.field

    def raw(field: int) -> str:
        return msh.raw(field) if msh is not None else ""

    trigger = msh.get(9, 2) if msh is not None else ""
    header = [
        "MSH",
        raw(2) or "^~\\&",
        raw(5),  # sending application / facility: who we are for the sender
        raw(6),
        raw(3),
        raw(4),
        timestamp,
        "",
        separators.component.join(("ACK", trigger, "ACK")),
        encode_escapes(control_id, separators),
        raw(11) or "P",
        raw(12) or "2.5.1",
    ]
    segments = [f.join(header), f.join(("MSA", code, raw(10)))]
    segments.extend(_err(issue, separators) for issue in issues)
    return ("\r".join(segments) + "\r").encode("utf-8")


def _err(issue: Issue, separators: Separators) -> str:
    c = separators.component
    fields = [
        "ERR",
        "",  # ERR-1 (error code and location) is the pre-2.5 form; ERR-2..4 replace it
        _erl(issue.location, c),
        c.join((issue.code.value, encode_escapes(issue.code.text, separators), "HL70357")),
        issue.severity.hl7,
        "",
        "",
        "",
        encode_escapes(issue.message, separators),
    ]
    return separators.field.join(fields)


def _erl(location: Location, component: str) -> str:
    """ERR-2 (ERL): segment ^ sequence ^ field ^ repetition ^ component; "" when unknown."""
    if not location.segment:
        return ""
    parts = [location.segment, str(location.sequence or 1)]
    if location.field is not None:
        parts += [str(location.field), "1"]
        if location.component is not None:
            parts.append(str(location.component))
    return component.join(parts)


def encode_escapes(text: str, separators: Separators) -> str:
    """Text made safe inside a field (v2.5.1 §2.7): the escape character first, then each
    delimiter; line breaks become ``\\.br\\``."""
    e = separators.escape
    text = text.replace(e, f"{e}E{e}")
    for character, code in (
        (separators.field, "F"),
        (separators.component, "S"),
        (separators.subcomponent, "T"),
        (separators.repetition, "R"),
    ):
        text = text.replace(character, f"{e}{code}{e}")
    if separators.truncation:
        text = text.replace(separators.truncation, f"{e}P{e}")
    return text.replace("\r\n", "\n").replace("\r", "\n").replace("\n", f"{e}.br{e}")

"""MSH-18 character sets (HL7 table 0211) → Python codecs, and decoding that never fails.

HL7 v2.5.1 ch. 2.15.9.18: MSH-18 names the character set of the whole
message; empty means the default, which leukofhir takes to be UTF-8 (ASCII
text reads the same, and UTF-8 is the preferred set since v2.8).  Only the
first repetition counts: later ones name alternate sets for ``\\C..\\`` and
``\\M..\\`` escapes, which are not supported (see :func:`er7.decode_escapes`).

A message declared in ASCII or a single-byte set (8859/n) whose non-ASCII
bytes are all valid UTF-8 is read as UTF-8, with a warning: such byte runs are
practically never real 8859 text, and reading them as declared would turn
``µ`` into ``Âµ`` (mojibake, a frequent fault of real feeds).

Only ASCII-compatible sets can be read, because segments are found on the
bytes.  ``UNICODE UTF-16``, ``UNICODE UTF-32`` and ``CNS 11643-1992`` (no
Python codec) are reported as not supported and read as UTF-8.
"""

from __future__ import annotations

import re

from leukofhir.errors import ErrorCode, Issue, Location, warning

__all__ = ["DEFAULT_CODEC", "FALLBACK_CODEC", "codec_for", "decode"]

DEFAULT_CODEC = "utf-8"
FALLBACK_CODEC = "latin-1"  # ISO 8859-1 maps every byte, so decoding cannot fail
MSH_18 = Location("MSH", 1, 18)
_NON_ASCII = rb"[\x80-\xff]"  # compiled on first use (re's cache): start-up

_TABLE_0211 = {
    "": DEFAULT_CODEC,
    "ASCII": "ascii",
    "8859/1": "latin-1",
    "8859/2": "iso8859-2",
    "8859/3": "iso8859-3",
    "8859/4": "iso8859-4",
    "8859/5": "iso8859-5",
    "8859/6": "iso8859-6",
    "8859/7": "iso8859-7",
    "8859/8": "iso8859-8",
    "8859/9": "iso8859-9",
    "8859/15": "iso8859-15",
    "ISO IR6": "ascii",
    "ISO IR14": "iso2022_jp",  # JIS X 0201 Roman, used with ISO IR87 through ISO 2022
    "ISO IR87": "iso2022_jp",
    "ISO IR159": "iso2022_jp_1",
    "ISO IR100": "latin-1",
    "ISO IR101": "iso8859-2",
    "ISO IR109": "iso8859-3",
    "ISO IR110": "iso8859-4",
    "ISO IR126": "iso8859-7",
    "ISO IR127": "iso8859-6",
    "ISO IR138": "iso8859-8",
    "ISO IR144": "iso8859-5",
    "ISO IR148": "iso8859-9",
    "ISO IR192": "utf-8",
    "GB 18030-2000": "gb18030",
    "KS X 1001": "euc_kr",
    "BIG-5": "big5",
    "UNICODE": "utf-8",  # deprecated, encoding form unspecified; UTF-8 is what senders mean
    "UNICODE UTF-8": "utf-8",
}

# Sets where bytes that happen to be valid UTF-8 are almost surely UTF-8 mislabelled.
_SINGLE_BYTE = frozenset(
    {"ascii", "latin-1", "cp1252", *(f"iso8859-{n}" for n in (2, 3, 4, 5, 6, 7, 8, 9, 15))}
)

# Spellings seen in real feeds that are not table 0211 values but name one set unambiguously.
_ALIASES = {
    "UTF-8": "utf-8",
    "UTF8": "utf-8",
    "ISO-8859-1": "latin-1",
    "ISO8859-1": "latin-1",
    "LATIN1": "latin-1",
    "LATIN-1": "latin-1",
    "ISO-8859-15": "iso8859-15",
    "WINDOWS-1252": "cp1252",
    "CP1252": "cp1252",
}


def codec_for(name: str) -> str | None:
    """The Python codec for an MSH-18 value (case and surrounding blanks ignored), or None."""
    key = " ".join(name.split()).upper()
    return _TABLE_0211.get(key) or _ALIASES.get(key)


def decode(data: bytes, declared: str, base_offset: int = 0) -> tuple[str, str, tuple[Issue, ...]]:
    """Decode one message: ``(text, codec used, warnings)``. Never raises.

    An unknown MSH-18 is read as UTF-8 with a warning.  Bytes that are not
    valid in the chosen codec make the whole message be read as ISO 8859-1
    (every byte kept), with a warning naming the first bad byte's offset
    (``base_offset`` is added, for callers that trimmed the start).
    """
    issues: list[Issue] = []
    codec = codec_for(declared)
    label = _label(declared)
    if codec is None:
        issues.append(_unknown(declared))
        codec, label = DEFAULT_CODEC, "UTF-8 (used in place of the unknown MSH-18 value)"
    if codec in _SINGLE_BYTE and not data.isascii() and _is_utf8(data):
        issues.append(_utf8_instead(data, label, base_offset))
        codec = "utf-8"
    try:
        return data.decode(codec), codec, tuple(issues)
    except UnicodeDecodeError as exc:
        issues.append(_fallback(exc.start + base_offset, data[exc.start], label))
    return data.decode(FALLBACK_CODEC), FALLBACK_CODEC, tuple(issues)


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _label(declared: str) -> str:
    if declared.strip():
        return f"{declared.strip()!r} (MSH-18)"
    return "UTF-8 (the default when MSH-18 is empty)"


def _unknown(declared: str) -> Issue:
    return warning(
        ErrorCode.DATA_TYPE,
        f"MSH-18 character set {declared.strip()!r} is not an HL7 table 0211 value leukofhir "
        "can read; the message was read as UTF-8. Send a table 0211 value such as "
        "'UNICODE UTF-8' or '8859/1'.",
        MSH_18,
    )


def _utf8_instead(data: bytes, label: str, base_offset: int) -> Issue:
    match = re.search(_NON_ASCII, data)
    first = match.start() if match else 0
    return warning(
        ErrorCode.DATA_TYPE,
        f"the message declares {label}, but its non-ASCII bytes (the first at byte "
        f"{first + base_offset}) are valid UTF-8, which text in a single-byte character set "
        "almost never is; the message was read as UTF-8. Declare 'UNICODE UTF-8' in MSH-18.",
        MSH_18,
    )


def _fallback(offset: int, byte: int, label: str) -> Issue:
    return warning(
        ErrorCode.DATA_TYPE,
        f"byte {offset} (0x{byte:02X}) is not valid {label}; the message was read as "
        "ISO 8859-1 (latin-1), which keeps every byte but may show some characters wrongly. "
        "Declare the character set actually used in MSH-18.",
        MSH_18,
    )

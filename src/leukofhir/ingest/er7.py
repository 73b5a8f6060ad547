"""HL7 v2 ER7 ("pipe and hat") reader: one message's bytes → segments and fields.

HL7 v2.5.1 ch. 2.5-2.7: a message is segments ended by a carriage return;
``MSH-1`` is the field separator and ``MSH-2`` the encoding characters
(component, repetition, escape, subcomponent and, from v2.7, truncation).

Fields are split eagerly with ``str.split`` and kept raw (still escaped);
repetitions, components and subcomponents are split, and escapes decoded, only
when :meth:`Segment.get` / :meth:`Segment.components` ask for them.  Measured
with timeit (CPython 3.11): ``parse_message`` on a 1.8 KB CBC message with 19
OBX (23 segments) takes about 33 µs; ``Segment.get`` about 0.5 µs;
``decode_escapes`` on text without the escape character about 0.06 µs.

Leniency, each reported as a warning :class:`~leukofhir.errors.Issue`:

* ``\\r``, ``\\n`` and ``\\r\\n`` all end a segment; blank lines are skipped;
* a line that is not a segment (name not three upper-case letters or digits
  followed by the field separator) is skipped, e.g. free text broken onto a
  new line;
* MSH-2 with fewer than four characters takes the HL7 defaults for the rest
  when no character then has two meanings;
* MSH-2 with the escape character doubled (``^~\\\\&``, as written by a
  program that escaped its own string literal) is read as ``^~\\&``;
* an unknown MSH-18 or bytes not valid in it (see :mod:`charset`);
* an unknown or unterminated escape sequence (kept as literal text).

What is not an HL7 v2 message raises :class:`~leukofhir.errors.FramingError`.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import NamedTuple

from leukofhir.errors import (
    ErrorCode,
    FramingError,
    Issue,
    Location,
    error,
    warning,
)
from leukofhir.ingest import charset

__all__ = ["Er7Message", "Segment", "Separators", "decode_escapes", "parse_message"]

_DEFAULT_ENCODING_CHARACTERS = "^~\\&"
_MSH = Location("MSH", 1)
_SEGMENT_NAME = re.compile(r"[A-Z0-9]{3}")
_BLANK = b" \t\r\n\x0b\x0c\x1c"
_BOM = b"\xef\xbb\xbf"


class Separators(NamedTuple):
    """The delimiters of one message, from MSH-1 and MSH-2 (HL7 v2.5.1 ch. 2.5.4)."""

    field: str = "|"
    component: str = "^"
    repetition: str = "~"
    escape: str = "\\"
    subcomponent: str = "&"
    truncation: str = ""  # fifth MSH-2 character (v2.7+ '#'), "" when absent


class Segment(NamedTuple):
    """One segment, fields raw; numbering as the standard counts (``OBX-5`` is ``fields[5]``).

    ``fields[0]`` is the segment name.  In MSH, ``fields[1]`` is MSH-1 (the
    field separator) and ``fields[2]`` MSH-2 as sent, so that field numbers
    match the standard for every segment.
    """

    name: str
    sequence: int
    fields: tuple[str, ...]
    separators: Separators

    @property
    def location(self) -> Location:
        """``Location(name, sequence)``, e.g. ``OBX[3]``; use ``.at(field)`` to go deeper."""
        return _location(self.name, self.sequence)

    def raw(self, field: int) -> str:
        """Raw (still escaped) text of a field, "" when absent."""
        return self.fields[field] if 0 <= field < len(self.fields) else ""

    def get(
        self, field: int, component: int = 1, subcomponent: int = 1, repetition: int = 1
    ) -> str:
        """Decoded (unescaped) text of one subcomponent, "" when absent.

        Positions count from 1 as the standard does.  MSH-1 and MSH-2 are
        returned as sent (their first component, subcomponent and repetition
        is the whole field; others are "").
        """
        fields = self.fields
        if not 0 <= field < len(fields) or not (value := fields[field]):
            return ""
        if field <= 2 and self.name == "MSH":  # MSH-1, MSH-2: as sent
            return value if component == subcomponent == repetition == 1 else ""
        separators = self.separators
        # inlined first-piece cuts: this is the reader's hottest line (see the timing above)
        if repetition == 1:
            value = value.split(separators.repetition, 1)[0]
        else:
            value = _nth(value, separators.repetition, repetition)
        if component == 1:
            value = value.split(separators.component, 1)[0]
        else:
            value = _nth(value, separators.component, component)
        if subcomponent == 1:
            value = value.split(separators.subcomponent, 1)[0]
        else:
            value = _nth(value, separators.subcomponent, subcomponent)
        return decode_escapes(value, separators) if separators.escape in value else value

    def components(self, field: int, repetition: int = 1) -> tuple[str, ...]:
        """Decoded components of one repetition; ``()`` when that repetition is empty or absent.

        A component holding subcomponents is returned as its *first
        subcomponent only* (use :meth:`get` for the others).  MSH-1 and MSH-2
        give one component, the field as sent.
        """
        value = self.raw(field)
        if self._is_encoding_field(field):
            return (value,) if value and repetition == 1 else ()
        return components_of(value, self.separators, repetition)

    def repetitions(self, field: int) -> tuple[str, ...]:
        """Raw repetitions of a field; ``()`` when the field is empty or absent.

        Use with :meth:`get` (``repetition=``) or :func:`decode_escapes`.
        MSH-1 and MSH-2 give one repetition, the field as sent.
        """
        value = self.raw(field)
        if not value:
            return ()
        if self._is_encoding_field(field):
            return (value,)
        return tuple(value.split(self.separators.repetition))

    def _is_encoding_field(self, field: int) -> bool:
        return 1 <= field <= 2 and self.name == "MSH"


class Er7Message(NamedTuple):
    """A message read into segments, with how it was read."""

    segments: tuple[Segment, ...]
    separators: Separators
    charset: str  # the Python codec actually used to decode
    issues: tuple[Issue, ...]  # warnings found while reading

    def first(self, name: str) -> Segment | None:
        """The first segment with this name, or None."""
        return next((segment for segment in self.segments if segment.name == name), None)

    @property
    def msh(self) -> Segment:
        """The MSH segment (``parse_message`` guarantees it is the first)."""
        return self.segments[0]


def components_of(raw: str, separators: Separators, repetition: int = 1) -> tuple[str, ...]:
    """:meth:`Segment.components` for a raw field's text (any field but MSH-1/MSH-2)."""
    value = _nth(raw, separators.repetition, repetition)
    if not value:
        return ()
    sub = separators.subcomponent
    if separators.escape not in value and sub not in value:  # the common case
        return tuple(value.split(separators.component))
    return tuple(
        decode_escapes(part.split(sub, 1)[0] if sub in part else part, separators)
        for part in value.split(separators.component)
    )


@lru_cache(maxsize=1024)
def _location(name: str, sequence: int) -> Location:
    return Location(name, sequence)


def _nth(text: str, separator: str, position: int) -> str:
    """The ``position``-th (1-based) piece of ``text`` split on ``separator``, "" when absent."""
    if position == 1:
        end = text.find(separator)
        return text if end < 0 else text[:end]
    if position < 1:
        return ""
    pieces = text.split(separator)
    return pieces[position - 1] if position <= len(pieces) else ""


# --------------------------------------------------------------------------- parsing


def parse_message(data: bytes) -> Er7Message:
    """One message's bytes (as from ``split_messages``) -> segments.

    Raises :class:`~leukofhir.errors.FramingError`, located at MSH, MSH-1 or
    MSH-2, when the bytes are not an HL7 v2 message: no MSH at the start, no
    MSH-1/MSH-2, encoding characters that are letters, digits, blanks or not
    distinct.  Never raises anything else, whatever the bytes.
    """
    start = _content_start(data)
    body = data[start:]
    if not body.startswith(b"MSH"):
        raise _no_msh(body)
    text, codec, charset_issues = charset.decode(body, _declared_charset(body), start)
    separators, separator_issues = _read_separators(text)
    segments, line_issues = _split_segments(text, separators)
    issues = (*separator_issues, *charset_issues, *line_issues)
    return Er7Message(segments, separators, codec, issues)


def _content_start(data: bytes) -> int:
    """Offset of the first byte after leading blanks, MLLP start blocks and a BOM."""
    rest = data.lstrip(_BLANK)
    if rest.startswith(_BOM):
        rest = rest[len(_BOM) :].lstrip(_BLANK)
    return len(data) - len(rest)


def _no_msh(body: bytes) -> FramingError:
    head = body[:3].decode("ascii", "replace")
    what = f"a {head!r} segment" if _SEGMENT_NAME.fullmatch(head) else "text that is not a segment"
    if not body:
        what = "nothing (the message is empty)"
    return FramingError(
        error(
            ErrorCode.SEGMENT_SEQUENCE,
            f"not an HL7 v2 message: it starts with {what}, not with an MSH segment. "
            "An HL7 v2 message begins with 'MSH' and the field separator, e.g. 'MSH|^~\\&|'.",
            _MSH,
        )
    )


def _declared_charset(body: bytes) -> str:
    """MSH-18 (first repetition) read on the raw bytes, before the text is decoded.

    Every character set leukofhir reads is ASCII-compatible, so separators and
    table 0211 names are the same bytes in all of them.
    """
    end = len(body)
    for line_end in (body.find(b"\r"), body.find(b"\n")):
        if 0 <= line_end < end:
            end = line_end
    parts = body[:end].split(body[3:4] or b"|", 18)
    if len(parts) < 18:
        return ""
    repetition = body[5:6] if len(body) > 5 else b"~"
    value = parts[17].split(repetition, 1)[0] if repetition else parts[17]
    return value.decode("ascii", "replace")


def _split_segments(text: str, separators: Separators) -> tuple[tuple[Segment, ...], list[Issue]]:
    """Segments of the decoded text; lines that are not segments become warnings."""
    if "\n" in text:
        text = text.replace("\r\n", "\r").replace("\n", "\r")
    field = separators.field
    escape = separators.escape
    segments: list[Segment] = []
    issues: list[Issue] = []
    counts: dict[str, int] = {}
    for number, line in enumerate(text.split("\r"), 1):
        if not line or line.isspace():
            continue
        name = line[:3]
        if (len(line) > 3 and line[3] != field) or (
            name not in counts and not _SEGMENT_NAME.fullmatch(name)  # counts: names seen valid
        ):
            issues.append(_not_a_segment(number))
            continue
        parts = line.split(field)
        if name == "MSH":
            parts.insert(1, field)
        sequence = counts[name] = counts.get(name, 0) + 1
        segment = Segment(name, sequence, tuple(parts), separators)
        segments.append(segment)
        if escape in line:
            issues.extend(_escape_issues(segment))
    return tuple(segments), issues


def _not_a_segment(number: int) -> Issue:
    return warning(
        ErrorCode.SEGMENT_SEQUENCE,
        f"line {number} is not an HL7 segment (a segment starts with a three-character "
        "name such as OBX followed by the field separator); ignored. If it continues the "
        "text of the line before, the sender must escape the line break as \\.br\\.",
    )


# --------------------------------------------------------------------------- MSH-1 / MSH-2


def _read_separators(text: str) -> tuple[Separators, list[Issue]]:
    """Separators from MSH-1 and MSH-2 of decoded text starting with ``MSH`` (v2.5.1 ch. 2.5.4).

    Raises FramingError when they cannot be read unambiguously.
    """
    field = text[3:4]
    if not field or field in "\r\n":
        raise _bad_separators("MSH-1 (the field separator) is missing.", 1)
    _check_separator(field, 1)
    end = len(text)
    for stop in (field, "\r", "\n"):
        found = text.find(stop, 4)
        if 0 <= found < end:
            end = found
    characters, issues = _encoding_characters(text[4:end])
    everything = field + characters
    if len(set(everything)) != len(everything):
        raise _bad_separators(
            f"MSH-1 and MSH-2 {_show(everything)} use a character twice; each separator "
            "must be distinct (usually '|^~\\&').",
            2,
        )
    component, repetition, escape, subcomponent = (characters[i] for i in range(4))
    return Separators(field, component, repetition, escape, subcomponent, characters[4:]), issues


def _encoding_characters(declared: str) -> tuple[str, list[Issue]]:
    """MSH-2 as usable characters: repaired doubled escape, defaults filled in; warnings."""
    if not declared:
        raise _bad_separators(
            "MSH-2 (the encoding characters) is empty or missing; send '^~\\&'.",
            2,
            ErrorCode.REQUIRED_FIELD_MISSING,
        )
    issues: list[Issue] = []
    characters = declared
    if len(declared) in (5, 6) and declared[2] == declared[3]:
        characters = declared[:3] + declared[4:]
        read_as = _show(characters)
        issues.append(
            _note(f"MSH-2 {_show(declared)} repeats the escape character; read as {read_as}.")
        )
    if len(characters) > 5:
        raise _bad_separators(
            f"MSH-2 has {len(characters)} characters; HL7 v2 defines at most five "
            "(component, repetition, escape, subcomponent, truncation), usually '^~\\&'.",
            2,
        )
    for character in characters:
        _check_separator(character, 2)
    if len(characters) < 4:
        characters += _DEFAULT_ENCODING_CHARACTERS[len(characters) :]
        read_as = _show(characters)
        issues.append(
            _note(f"MSH-2 {_show(declared)} has fewer than four characters; read as {read_as}.")
        )
    return characters, issues


def _check_separator(character: str, field: int) -> None:
    if character.isalnum() or character.isspace():
        raise _bad_separators(
            f"MSH-{field} contains {_show(character)}, which cannot be a separator: letters, "
            "digits and blanks are data. The message must begin 'MSH|^~\\&|' or similar.",
            field,
        )


def _bad_separators(
    message: str, field: int, code: ErrorCode = ErrorCode.DATA_TYPE
) -> FramingError:
    return FramingError(error(code, message, _MSH.at(field)))


def _show(text: str) -> str:
    """Separators quoted as written (``'^~\\&'``), control characters escaped."""
    return f"'{text}'" if text.isprintable() else repr(text)


def _note(message: str) -> Issue:
    return warning(ErrorCode.DATA_TYPE, message, _MSH.at(2))


# --------------------------------------------------------------------------- escapes


def decode_escapes(text: str, separators: Separators) -> str:
    """Decode HL7 v2 escape sequences (v2.5.1 ch. 2.7); text without any is returned as is.

    * ``\\F\\ \\S\\ \\T\\ \\R\\ \\E\\`` → field, component, subcomponent,
      repetition separator, escape character; ``\\P\\`` → the truncation
      character (v2.7) when MSH-2 declares one, else kept literally;
    * ``\\Xhhhh..\\`` → those bytes (upper- or lower-case hex digits, an even
      number of them) decoded as UTF-8, else as ISO 8859-1;
    * highlighting ``\\H\\`` and ``\\N\\`` is dropped (plain text has no bold);
    * formatting (ch. 2.7.6): ``\\.br\\`` → ``\\n``; ``\\.sp n\\`` → n line
      breaks (n absent: one); ``\\.ce\\`` → a line break (centring lost);
      ``\\.sk n\\``, ``\\.in n\\``, ``\\.ti n\\`` → n spaces (absent or
      negative: none for .in/.ti, one for .sk); ``\\.fi\\`` and ``\\.nf\\``
      (wrap modes) are dropped; n is capped at 99;
    * ``\\Zxx..\\`` (locally defined), ``\\Cxxyy\\`` and ``\\Mxxyy[zz]\\``
      (character set switches, not supported) are dropped, text kept;
    * anything else between two escape characters, and an escape character
      with no closing one, is kept literally.

    Sequences are read left to right; an escape sequence ends at the next
    escape character.
    """
    escape = separators.escape
    if escape not in text:
        return text
    return _escape_pattern(escape).sub(lambda match: _replace(match, separators), text)


@lru_cache(maxsize=32)
def _escape_pattern(escape: str) -> re.Pattern[str]:
    quoted = re.escape(escape)
    return re.compile(f"{quoted}([^{quoted}]*){quoted}")


# escapes are rare: their patterns are compiled on first use (re's cache), not at start-up
_HEX = r"(?:[0-9A-Fa-f]{2})+"
_FORMAT = r"\.(br|sp|ce|sk|in|ti|fi|nf)(?: *([+-]?[0-9]{1,9}))?"
_CHARSET_SWITCH = r"C[0-9A-Fa-f]{4}|M[0-9A-Fa-f]{4}(?:[0-9A-Fa-f]{2})?"
_MAX_REPEAT = 99


def _replace(match: re.Match[str], separators: Separators) -> str:
    decoded = _translate(match.group(1), separators)
    return match.group(0) if decoded is None else decoded


def _translate(body: str, separators: Separators) -> str | None:
    """The text an escape sequence stands for, or None when it is not one leukofhir knows."""
    simple = _simple_escapes(separators).get(body)
    if simple is not None:
        return simple
    head = body[:1]
    if head == "X":
        return _hex(body[1:])
    if head == ".":
        return _formatting(body)
    if head == "Z" or re.fullmatch(_CHARSET_SWITCH, body):
        return ""
    return None


@lru_cache(maxsize=32)
def _simple_escapes(separators: Separators) -> dict[str, str]:
    table = {
        "F": separators.field,
        "S": separators.component,
        "T": separators.subcomponent,
        "R": separators.repetition,
        "E": separators.escape,
        "H": "",
        "N": "",
    }
    if separators.truncation:
        table["P"] = separators.truncation
    return table


def _hex(digits: str) -> str | None:
    if not re.fullmatch(_HEX, digits):
        return None
    data = bytes.fromhex(digits)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _formatting(body: str) -> str | None:
    match = re.fullmatch(_FORMAT, body)
    if match is None:
        return None
    command, number = match.groups()
    if command in _NO_ARGUMENT:
        return _NO_ARGUMENT[command] if number is None else None
    text, default, least = _WITH_ARGUMENT[command]
    count = default if number is None else min(int(number), _MAX_REPEAT)
    return text * max(count, least)


_NO_ARGUMENT = {"br": "\n", "ce": "\n", "fi": "", "nf": ""}
# command -> (text repeated n times, n when absent, least n): .sp always ends the line
_WITH_ARGUMENT = {"sp": ("\n", 1, 1), "sk": (" ", 1, 0), "in": (" ", 0, 0), "ti": (" ", 0, 0)}


def _escape_issues(segment: Segment) -> list[Issue]:
    """Warnings for fields with escape sequences that will be kept literally (MSH-1/2 skipped)."""
    first = 3 if segment.name == "MSH" else 1
    separators = segment.separators
    escape = separators.escape
    pattern = _escape_pattern(escape)
    issues: list[Issue] = []
    for number in range(first, len(segment.fields)):
        value = segment.fields[number]
        if escape in value and _has_bad_escape(value, pattern, separators):
            issues.append(
                warning(
                    ErrorCode.DATA_TYPE,
                    f"{segment.name}-{number} has an unknown or unterminated escape sequence "
                    f"(HL7 v2.5.1 ch. 2.7); kept as literal text. A literal {_show(escape)} "
                    f"must be sent as {escape}E{escape}.",
                    segment.location.at(number),
                )
            )
    return issues


def _has_bad_escape(value: str, pattern: re.Pattern[str], separators: Separators) -> bool:
    found = 0
    for match in pattern.finditer(value):
        if _translate(match.group(1), separators) is None:
            return True
        found += 2
    return value.count(separators.escape) != found

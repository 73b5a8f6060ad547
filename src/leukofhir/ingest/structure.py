"""Opt-in structural check of one HL7 v2 message (``--validate-structure``).

leukofhir's own reader is deliberately tolerant: it takes what it needs (MSH, PID, OBR,
OBX, NTE) from messages that real feeds get slightly wrong.  This module is the strict
second opinion a user can ask for.  It parses the message with hl7apy (validation level
TOLERANT, ``find_groups=True``) against the message structure of the message's own
version (MSH-12), runs hl7apy's validator and adds three checks hl7apy does not make:

* segment order inside each group, against the order hl7apy's own structure tables give
  (hl7apy places out-of-order segments without complaint);
* segments hl7apy could not place anywhere in the structure (it drops them silently);
* a lab result (ORU, OUL) without a PID: HL7 allows it, leukofhir cannot name the patient.

Every problem becomes a WARNING :class:`~leukofhir.errors.Issue` with an HL7 0357 code and,
where hl7apy's message allows it, a location (``OBX[3]-6.3``).  Segment-level problems are
found by validating each segment on its own, so their location has the segment's sequence
number; problems of the message structure itself (a missing group, say) have none.  The same
problem in several segments of one kind is one issue (``OBX[1-19]-6.3: ...``), located at the
first.  Nothing here raises: an exception from hl7apy, or from this module, becomes a
warning too (code 207, issue type ``exception``).

Version handling: a version hl7apy does not know (or an empty MSH-12) is checked against
2.5.1, with a warning saying so.  A fifth encoding character (``^~\\&#``) before v2.7, which
hl7apy refuses, is dropped for the check, with a warning.  A segment that the version does
not define, or a line that does not start with a segment name, is left out with a warning.

Warnings to expect on valid messages, because hl7apy's tables are narrower than current HL7
practice (documented, harmless, and asserted as the only ones in the tests):

* table 0396 (coding system): ``UCUM``, ``SCT``, ``HL70487`` and local ``99zzz`` systems;
* table 0301 (universal id type): ``CLIA`` (and ``L``) in MSH-4.3 and similar HD fields;
* v2.3 only: ORC-7 and OBR-27 (quantity/timing) reported as required and empty.

hl7apy is imported only here; it has no type information, so its objects are ``Any`` and
stay inside this module.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import hl7apy
from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.parser import parse_message

from leukofhir.errors import ErrorCode, Issue, Location, warning

__all__ = ["FALLBACK_VERSION", "validate_structure"]

FALLBACK_VERSION = "2.5.1"
_LAB_RESULT_TYPES = frozenset({"ORU", "OUL"})
_MAX_VALUE_SHOWN = 20

_TABLE = re.compile(
    r"^Value (?P<value>.*) not in table HL7(?P<table>\w+) in element (?P<path>\S+)$"
)
_LENGTH = re.compile(r"^Exceeded max length \((?P<max>-?\d+)\) of (?P<path>\S+)$")
_MISSING = re.compile(r"^Missing required child (?P<parent>\S+)\.(?P<child>[^.\s]+)$")
_LIMIT = re.compile(r"^Child limit exceeded (?P<parent>\S+)\.(?P<child>[^.\s]+)$")
_DATATYPE = re.compile(r"^Datatype .* is not correct for (?P<path>\S+) \(it must be .*\)$")
_INVALID_CHILDREN = re.compile(
    r"^Invalid children detected for <(?P<kind>\w+) (?P<name>\w+)(?:[^>]*? of type (?P<type>\w+))?"
)
_FIELD_NAME = re.compile(r"^[A-Z][A-Z0-9]{1,3}_\d+$")  # OBX_6, CE_3: a field or component
_SEGMENT_NAME = re.compile(r"^[A-Z][A-Z0-9]{2}$")


def validate_structure(text: str) -> tuple[Issue, ...]:
    """Structural problems of one message (segments separated by ``\\r``), all WARNINGs.

    Never raises; an empty tuple means hl7apy and the extra checks found nothing.
    """
    try:
        return tuple(_Check(text).run())
    except Exception as exc:  # the promise is: never raise
        return (_failure("the structure check itself failed", exc),)


def _failure(what: str, exc: BaseException, location: Location | None = None) -> Issue:
    detail = str(exc).splitlines()[0] if str(exc) else ""
    message = f"{what}: {type(exc).__name__}" + (f" ({detail})" if detail else "")
    return warning(ErrorCode.INTERNAL_ERROR, message, location or Location(), fhir_type="exception")


@dataclass
class _Check:
    text: str
    issues: list[Issue] = field(default_factory=list)
    version: str = ""
    structure: str = ""
    segment_lines: Counter[tuple[str, str]] = field(default_factory=Counter)

    # -- driver -------------------------------------------------------------------------

    def run(self) -> list[Issue]:
        segments = _segments_of(self.text)
        if not segments or not segments[0].startswith("MSH") or len(segments[0]) < 8:
            self.warn(
                ErrorCode.SEGMENT_SEQUENCE,
                "the text does not start with an MSH segment (MSH, a field separator and "
                "the encoding characters); nothing else was checked",
                Location("MSH", 1),
            )
            return self.issues
        if not _usable_encoding(segments[0]):
            self.warn(
                ErrorCode.DATA_TYPE,
                "MSH-1/MSH-2 do not hold a field separator and four (or five) distinct, "
                "non-alphanumeric encoding characters; nothing else was checked",
                Location("MSH", 1, 2),
            )
            return self.issues
        segments = self.named_segments(segments)
        header, message_type = self.prepare_header(segments[0])
        parsed = self.parse(header, segments)
        if parsed is None:
            return self.issues
        message, segments = parsed
        self.structure = _name_of(message)
        names = [_segment_name(s, segments[0][3]) for s in segments]
        placed = self.match_segments(_flatten(message), names)
        self.check_order(message, placed)
        self.validate_segments(placed)
        if _child_order(message):
            self.validate_message(message, placed)
        if message_type.split("^")[0] in _LAB_RESULT_TYPES and "PID" not in names:
            self.warn(
                ErrorCode.SEGMENT_SEQUENCE,
                "no PID segment: the message structure allows a result without a patient, "
                "but leukofhir cannot tie it to one",
                Location("PID"),
            )
        return _without_repeats(self.issues)

    def parse(self, header: str, segments: list[str]) -> tuple[Any, list[str]] | None:
        """hl7apy's tree of the message, leaving out segments it has no definition for."""
        separator = header[3]
        while True:
            text = "\r".join([header, *segments[1:]])
            try:
                message = _parse(text, find_groups=True)
                if _name_of(message) and not _child_order(message):
                    self.structure = _name_of(message)
                    self.warn(
                        ErrorCode.UNSUPPORTED_MESSAGE_TYPE,
                        f"hl7apy knows no message structure {self.structure} in this version; "
                        "only the segments were checked",
                        Location("MSH", 1, 9),
                    )
                    message = _parse(text, find_groups=False)
            except Exception as exc:
                unknown = _undefined_segment(exc)
                names = [_segment_name(s, separator) for s in segments[1:]]
                if unknown is None or unknown not in names:
                    self.issues.append(_parse_failure(exc))
                    return None
                self.warn(
                    ErrorCode.SEGMENT_SEQUENCE,
                    f"segment {unknown} is not defined in HL7 v{self.version}; "
                    "it was left out of the check",
                    Location(unknown),
                )
                segments = segments[:1] + [
                    s for s in segments[1:] if _segment_name(s, separator) != unknown
                ]
                continue
            return message, segments

    def named_segments(self, segments: list[str]) -> list[str]:
        """MSH and every segment whose name hl7apy can parse; the others are reported."""
        separator = segments[0][3]
        kept = segments[:1]
        for number, segment in enumerate(segments[1:], 2):
            name = _segment_name(segment, separator)
            if _SEGMENT_NAME.match(name):
                kept.append(segment)
            else:
                self.warn(
                    ErrorCode.SEGMENT_SEQUENCE,
                    f"segment {number} of the message does not start with a segment name "
                    f"(it starts '{name[:3]}'); it was left out of the check",
                    Location(),
                )
        return kept

    def warn(self, code: ErrorCode, message: str, location: Location) -> None:
        prefix = "HL7 structure"
        if self.version:
            prefix += f" (v{self.version}{' ' + self.structure if self.structure else ''})"
        self.issues.append(warning(code, f"{prefix}: {message}", location))

    # -- MSH: encoding characters, version, message type --------------------------------

    def prepare_header(self, msh: str) -> tuple[str, str]:
        """MSH as hl7apy will accept it, and MSH-9 as sent (components joined by ``^``)."""
        separator = msh[3]
        fields = msh.split(separator)
        encoding = fields[1]
        component = encoding[0] if encoding else "^"
        while len(fields) < 12:
            fields.append("")
        version = fields[11].split(component)[0].strip()
        if len(encoding) == 5 and version < "2.7":
            self.warn(
                ErrorCode.DATA_TYPE,
                f"MSH-2 has five encoding characters ('{encoding}'); the truncation character "
                "exists only from HL7 v2.7, so it was ignored for this check",
                Location("MSH", 1, 2),
            )
            fields[1] = encoding[:4]
        if version not in hl7apy.SUPPORTED_LIBRARIES:
            if version:
                self.warn(
                    ErrorCode.UNSUPPORTED_VERSION,
                    f"HL7 version '{version[:_MAX_VALUE_SHOWN]}' (MSH-12) is not known to "
                    f"hl7apy; the message was checked against v{FALLBACK_VERSION}",
                    Location("MSH", 1, 12),
                )
            else:
                self.warn(
                    ErrorCode.REQUIRED_FIELD_MISSING,
                    f"MSH-12 (version) is empty; the message was checked against "
                    f"v{FALLBACK_VERSION}",
                    Location("MSH", 1, 12),
                )
            version = FALLBACK_VERSION
            fields[11] = FALLBACK_VERSION
        self.version = version
        message_type = fields[8].replace(component, "^") if len(fields) > 8 else ""
        if not message_type.strip("^ "):
            self.warn(
                ErrorCode.REQUIRED_FIELD_MISSING,
                "MSH-9 (message type) is empty, so there is no message structure to check "
                "against; only the segments were checked",
                Location("MSH", 1, 9),
            )
        return separator.join(fields), message_type

    # -- segments hl7apy placed, and where ---------------------------------------------

    def match_segments(self, tree: list[Any], names: list[str]) -> list[tuple[Any, Location]]:
        """Pair hl7apy's segments with the input's (same order); report the ones it dropped."""
        seen: Counter[str] = Counter()
        placed: list[tuple[Any, Location]] = []
        position = 0
        for element in tree:
            name = _name_of(element)
            while position < len(names) and names[position] != name:
                self.dropped(names[position], seen)
                position += 1
            seen[name] += 1
            placed.append((element, Location(name, seen[name])))
            position += 1
        for rest in names[position:]:
            self.dropped(rest, seen)
        return placed

    def dropped(self, name: str, seen: Counter[str]) -> None:
        seen[name] += 1
        location = Location(name, seen[name])
        if name.startswith("Z"):
            text = f"{location} is a site-defined (Z) segment hl7apy could not place; not checked"
        else:
            where = f"the {self.structure} structure" if self.structure else "this message"
            text = f"{location} has no place in {where} after the segments before it"
        self.warn(ErrorCode.SEGMENT_SEQUENCE, text, location)

    def check_order(self, element: Any, placed: list[tuple[Any, Location]]) -> None:
        """Children of every group must follow the order of the group's structure."""
        where = {id(segment): location for segment, location in placed}
        for group in _groups(element):
            order = _child_order(group)
            if not order:
                continue
            last_rank, last_child = -1, None
            for child in _children(group):
                rank = order.get(_name_of(child), -1)
                if rank < 0:
                    continue
                if rank < last_rank and last_child is not None:
                    first, previous = _first_segment(child), _first_segment(last_child)
                    here = where.get(id(first), Location(_name_of(first)))
                    before = where.get(id(previous), Location(_name_of(previous)))
                    self.warn(
                        ErrorCode.SEGMENT_SEQUENCE,
                        f"{here} is out of order: in {_name_of(group)} it belongs before {before}",
                        here,
                    )
                else:
                    last_rank, last_child = rank, child

    # -- hl7apy's validator -------------------------------------------------------------

    def validate_segments(self, placed: list[tuple[Any, Location]]) -> None:
        with tempfile.TemporaryDirectory(prefix="leukofhir-structure-") as folder:
            report = os.path.join(folder, "report.txt")
            for segment, location in placed:
                for kind, line in _validator_report(segment, report):
                    self.segment_lines[(kind, line)] += 1
                    self.hl7apy_issue(line, location.segment, location)

    def validate_message(self, message: Any, placed: list[tuple[Any, Location]]) -> None:
        """Problems of the message structure itself, minus those already found per segment."""
        present = {location.segment for _, location in placed}
        with tempfile.TemporaryDirectory(prefix="leukofhir-structure-") as folder:
            lines = _validator_report(message, os.path.join(folder, "report.txt"))
        for kind, line in lines:
            if self.segment_lines[(kind, line)] > 0:  # already reported with its position
                self.segment_lines[(kind, line)] -= 1
                continue
            self.hl7apy_issue(line, "", None, present)

    def hl7apy_issue(
        self,
        line: str,
        segment: str,
        where: Location | None,
        present: set[str] | None = None,
    ) -> None:
        """One line of hl7apy's report, as an issue with a readable message and location."""
        known = {segment} if segment else (present or set())
        base = where or Location()
        if match := _TABLE.match(line):
            location = _location(match["path"], known, base)
            value = match["value"][:_MAX_VALUE_SHOWN]
            self.warn(
                ErrorCode.TABLE_VALUE_NOT_FOUND,
                f"{_at(location)}value '{value}' is not in HL7 table {match['table']}",
                location,
            )
        elif match := _LENGTH.match(line):
            location = _location(match["path"], known, base)
            self.warn(
                ErrorCode.VALUE_TOO_LONG,
                f"{_at(location)}longer than the {match['max']} characters the standard allows",
                location,
            )
        elif match := _MISSING.match(line):
            child = match["child"]
            if _FIELD_NAME.match(child):
                location = _location(f"{match['parent']}.{child}", known, base)
                self.warn(
                    ErrorCode.REQUIRED_FIELD_MISSING,
                    f"{_at(location)}required field or component is empty",
                    location,
                )
            else:
                location = Location(child) if _SEGMENT_NAME.match(child) else base
                kind = "segment" if _SEGMENT_NAME.match(child) else "group"
                self.warn(
                    ErrorCode.SEGMENT_SEQUENCE,
                    f"required {kind} {child} is missing from {match['parent']}",
                    location,
                )
        elif match := _LIMIT.match(line):
            child = match["child"]
            if _FIELD_NAME.match(child):
                location = _location(f"{match['parent']}.{child}", known, base)
                code = ErrorCode.DATA_TYPE
            else:
                location = Location(child) if _SEGMENT_NAME.match(child) else Location()
                code = ErrorCode.SEGMENT_SEQUENCE
            self.warn(code, f"{child} repeats more often than {match['parent']} allows", location)
        elif match := _DATATYPE.match(line):
            location = _location(match["path"], known, base)
            self.warn(ErrorCode.DATA_TYPE, f"{_at(location)}{line}", location)
        elif match := _INVALID_CHILDREN.match(line):
            if match["kind"] in ("Group", "Message"):
                self.warn(ErrorCode.SEGMENT_SEQUENCE, line, Location())
            elif match["kind"] == "Segment":
                self.warn(
                    ErrorCode.DATA_TYPE,
                    f"{str(base) or match['name']}: has more fields than the {match['name']} "
                    f"segment defines in v{self.version}",
                    base,
                )
            else:
                location = _location(match["name"], known, base)
                datatype = f" of data type {match['type']}" if match["type"] else ""
                self.warn(
                    ErrorCode.DATA_TYPE,
                    f"{_at(location)}holds more fields or components than its definition"
                    f"{datatype} has",
                    location,
                )
        else:
            self.warn(ErrorCode.DATA_TYPE, line, base)


# -- helpers around hl7apy objects (all Any) --------------------------------------------


def _parse(text: str, *, find_groups: bool) -> Any:
    return parse_message(text, validation_level=VALIDATION_LEVEL.TOLERANT, find_groups=find_groups)


def _usable_encoding(msh: str) -> bool:
    """MSH-1 and MSH-2 as HL7 defines them: 4 (5 from v2.7) distinct punctuation characters."""
    separator = msh[3]
    encoding = msh[4:].split(separator, 1)[0]
    characters = separator + encoding
    return (
        len(encoding) in (4, 5)
        and len(set(characters)) == len(characters)
        and not any(c.isalnum() or c.isspace() for c in characters)
    )


def _without_repeats(issues: list[Issue]) -> list[Issue]:
    """Drop an issue that repeats an earlier one's code and field; merge the same problem
    in several segments of one kind (``UCUM`` in OBX[1]-6.3 ... OBX[19]-6.3) into one issue
    located at the first of them and naming them all (``OBX[1-19]-6.3``)."""
    seen: set[tuple[ErrorCode, str]] = set()
    groups: dict[tuple[object, ...], list[Issue]] = {}
    for number, issue in enumerate(issues):
        where = issue.location
        exact = (issue.code, str(where))
        if where.field is not None and exact in seen:
            continue
        seen.add(exact)
        if where.segment and where.sequence is not None and str(where) in issue.message:
            generic = issue.message.replace(str(where), "\0")
            key: tuple[object, ...] = (
                issue.code,
                where.segment,
                where.field,
                where.component,
                generic,
            )
        else:
            key = (number,)
        groups.setdefault(key, []).append(issue)
    merged: list[Issue] = []
    for group in groups.values():
        first = group[0]
        if len(group) == 1:
            merged.append(first)
            continue
        where = first.location
        many = Location(where.segment, None, where.field, where.component)
        sequences = _ranges([issue.location.sequence or 0 for issue in group])
        named = str(many).replace(where.segment, f"{where.segment}[{sequences}]", 1)
        merged.append(
            warning(
                first.code,
                first.message.replace(str(where), named),
                where,
                fhir_type=first.fhir_type,
            )
        )
    return merged


def _ranges(numbers: list[int]) -> str:
    """[1, 2, 3, 5, 7, 8] -> "1-3,5,7-8"."""
    parts: list[str] = []
    start = previous = numbers[0]
    for number in [*numbers[1:], None]:
        if number is not None and number == previous + 1:
            previous = number
            continue
        parts.append(str(start) if start == previous else f"{start}-{previous}")
        if number is not None:
            start = previous = number
    return ",".join(parts)


def _segments_of(text: str) -> list[str]:
    text = text.lstrip("\ufeff").replace("\r\n", "\r").replace("\n", "\r")
    return [segment for segment in text.split("\r") if segment.strip()]


def _segment_name(segment: str, separator: str) -> str:
    return segment.split(separator, 1)[0].strip()


def _name_of(element: Any) -> str:
    name = getattr(element, "name", None)
    return name if isinstance(name, str) else ""


def _children(element: Any) -> list[Any]:
    try:
        return list(element.children)
    except Exception:
        return []


def _is_segment(element: Any) -> bool:
    return getattr(element, "classname", "") == "Segment"


def _flatten(element: Any) -> list[Any]:
    found: list[Any] = []
    for child in _children(element):
        if _is_segment(child):
            found.append(child)
        elif getattr(child, "classname", "") == "Group":
            found.extend(_flatten(child))
    return found


def _groups(element: Any) -> Iterator[Any]:
    """The message itself and every group in it."""
    yield element
    for child in _children(element):
        if getattr(child, "classname", "") == "Group":
            yield from _groups(child)


def _first_segment(element: Any) -> Any:
    if _is_segment(element):
        return element
    segments = _flatten(element)
    return segments[0] if segments else element


def _reference_of(element: Any) -> Any:
    try:
        return element.reference
    except Exception:
        return None


def _child_order(group: Any) -> dict[str, int]:
    reference = _reference_of(group)
    try:
        if reference[0] != "sequence":
            return {}
        return {str(child[0]): rank for rank, child in enumerate(reference[1])}
    except Exception:
        return {}


def _validator_report(element: Any, path: str) -> list[tuple[str, str]]:
    """Every error and warning hl7apy's validator finds in ``element``.

    ``Validator.validate`` collects all problems, writes them to ``report_file`` and then
    raises the first error; the file is the only place where all of them are available.
    """
    if os.path.exists(path):
        os.remove(path)
    failure: Exception | None = None
    try:
        element.validate(report_file=path)
    except Exception as exc:  # ValidationError is expected; anything else is reported
        failure = exc
    if not os.path.exists(path):
        if failure is None:
            return []
        what = _name_of(element) or "the message"
        return [("Error", f"hl7apy could not validate {what}: {type(failure).__name__} {failure}")]
    lines: list[tuple[str, str]] = []
    with open(path, encoding="utf-8", errors="replace") as report:
        for raw in report.read().splitlines():
            kind, _, message = raw.partition(": ")
            if kind in ("Error", "Warning") and message:
                lines.append((kind, message.strip()))
            elif lines:  # a message that spanned lines
                lines[-1] = (lines[-1][0], f"{lines[-1][1]} {raw.strip()}")
    return lines


def _location(path: str, segments: set[str], base: Location) -> Location:
    """``OBX_6.CE_3`` -> OBX-6.3 (in ``base``'s segment and sequence when it has one)."""
    parts = path.split(".")
    for index, part in enumerate(parts):
        name, _, number = part.rpartition("_")
        if name in segments and number.isdigit():
            component = None
            if index + 1 < len(parts):
                sub_name, _, sub_number = parts[index + 1].rpartition("_")
                if sub_name and sub_number.isdigit():
                    component = int(sub_number)
            if base.segment == name:
                return base.at(int(number), component)
            return Location(name, None, int(number), component)
    return base


def _at(location: Location) -> str:
    return f"{location}: " if location.field is not None else ""


def _undefined_segment(exc: Exception) -> str | None:
    """The segment name in hl7apy's "Invalid name for Segment: PRT", if that is the error."""
    if type(exc).__name__ != "InvalidName":
        return None
    _, _, name = str(exc).rpartition(":")
    name = name.strip()
    return name if _SEGMENT_NAME.match(name) else None


def _parse_failure(exc: Exception) -> Issue:
    name = type(exc).__name__
    if name == "InvalidEncodingChars":
        return warning(
            ErrorCode.DATA_TYPE,
            f"HL7 structure: MSH-2 encoding characters are not usable ({exc}); "
            "nothing else was checked",
            Location("MSH", 1, 2),
        )
    if name == "UnsupportedVersion":
        return warning(
            ErrorCode.UNSUPPORTED_VERSION,
            f"HL7 structure: {exc}; nothing else was checked",
            Location("MSH", 1, 12),
        )
    return _failure("HL7 structure: hl7apy could not parse the message", exc)

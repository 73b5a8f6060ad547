"""FHIR R4 input → one :class:`FhirUnit` per report (or per thing that cannot be read).

Three forms, detected from the bytes (:func:`read_fhir`):

- one resource: an Observation or a DiagnosticReport (located as ``Observation``);
- a Bundle of any type (collection, searchset, transaction, batch, document, message,
  history), located as ``Bundle.entry[3].resource``; references in every form FHIR
  allows resolve (:mod:`.fhir_index`) and Observations group into reports
  (:mod:`.fhir_group`);
- NDJSON, one resource per line, read in bounded memory (:mod:`.fhir_ndjson`), located
  as ``$ndjson[7]`` (line 7, counted from 1).  :func:`read_fhir_lines` reads it from any
  iterable of lines (an open file) without holding the file.

Each report is its own unit, so a resource that fails validation (:mod:`.fhir_validate`)
rejects its report only and every other report of the input is still read.  A unit's
``message.digest`` is the sha256 of its resources' canonical JSON (:mod:`.fhir_json`),
so it does not depend on where they stood.  Reading never raises: what cannot be read
is a unit whose ``error`` says where (FHIRPath, or line and column of text that is not
JSON) and why.  An unexpected fault while reading one NDJSON line, one document or one
report is caught there (:func:`leukofhir.errors.issue_for`: code 207, ``exception``):
it rejects that line, document or report, and reading goes on with the next.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from leukofhir.errors import ErrorCode, Issue, Location, error, issue_for
from leukofhir.ingest.fhir_group import bundle_entries, group_entries
from leukofhir.ingest.fhir_index import Entry, ResourceIndex, as_str, make_entry
from leukofhir.ingest.fhir_json import JsonError, load_json, strip_bom
from leukofhir.ingest.fhir_ndjson import NdjsonGrouper
from leukofhir.ingest.fhir_unit import Group, Source, build_message
from leukofhir.ingest.sniff import looks_like_fhir
from leukofhir.model import LabMessage
from leukofhir.terminology.tables import Terminology, packaged_terminology

__all__ = ["FhirUnit", "looks_like_fhir", "read_fhir", "read_fhir_lines"]

READ = ("Observation", "DiagnosticReport")
_BLANK = b" \t\r\n"


@dataclass(frozen=True, slots=True)
class FhirUnit:
    """What the pipeline turns into one outcome (like one HL7 message).

    ``index`` counts units from 0; ``offset`` is the first line of the unit in NDJSON
    (from 1), 0 in a single document.  Exactly one of ``message`` and ``error`` is set.
    """

    index: int
    offset: int
    message: LabMessage | None = None
    error: Issue | None = None


def read_fhir(
    data: bytes, default_timezone: str, *, terminology: Terminology | None = None
) -> Iterator[FhirUnit]:
    """The units of one FHIR input: a resource, a Bundle, or NDJSON.

    ``terminology`` decides which Observations are CBC fields, so validated (default:
    the packaged tables; pass the one the pipeline uses when it has local mappings).
    """
    terms = terminology or packaged_terminology()
    data = strip_bom(data)
    if _is_ndjson(data):
        yield from read_fhir_lines(_lines(data), default_timezone, terminology=terms)
        return
    if not data.strip(_BLANK):
        yield _failure(0, 0, "the input is empty: there is no FHIR resource to read", "")
        return
    yield from _document(data, default_timezone, terms, root="", first=0, line=0)


def read_fhir_lines(
    lines: Iterable[bytes], default_timezone: str, *, terminology: Terminology | None = None
) -> Iterator[FhirUnit]:
    """The units of NDJSON given line by line; memory bounded (see :mod:`.fhir_ndjson`)."""
    terms = terminology or packaged_terminology()
    grouper = NdjsonGrouper()
    source = Source(default_timezone, terms, grouper.patient_of, message_type="NDJSON")
    count = 0
    for number, raw in enumerate(lines, start=1):
        line = raw.strip(_BLANK)
        if not line:
            continue
        try:
            units = list(_ndjson_line(line, number, grouper, source, count))
        except Exception as exc:  # a fault on this line rejects this line only
            units = [FhirUnit(count, number, None, issue_for(exc, _at(f"$ndjson[{number}]")))]
        for unit in units:
            count += 1
            yield unit
        for group in grouper.expire(number):
            yield _unit(group, source, count, group.first_line)
            count += 1
    for group in grouper.finish():
        yield _unit(group, source, count, group.first_line)
        count += 1
    if count == 0:
        yield _failure(0, 0, "the input holds no FHIR resource (it is empty or blank)", "")


def _ndjson_line(
    line: bytes, number: int, grouper: NdjsonGrouper, source: Source, count: int
) -> Iterator[FhirUnit]:
    root = f"$ndjson[{number}]"
    try:
        resource = load_json(strip_bom(line))
    except JsonError as exc:
        where = Location(expression=root, line=number, column=exc.column)
        yield _failure(count, number, f"line {number} is not JSON: {exc.reason}", where)
        return
    kind = _resource_type(resource)
    if kind is None:
        yield _failure(count, number, f"line {number} is not a FHIR resource", root)
    elif kind == "Patient":
        grouper.remember_patient(resource)
    elif kind == "Bundle":
        data_units = _document_from(resource, source.zone, source.terminology, root, count, number)
        yield from data_units
    elif kind in READ:
        for group in grouper.add(make_entry(resource, root, number)):
            yield _unit(group, source, count, group.first_line)
            count += 1


def _unit(group: Group, source: Source, index: int, offset: int, path: str = "") -> FhirUnit:
    """One report's unit; a fault while building it rejects this report only."""
    try:
        message, failure = build_message(group, source, path)
    except Exception as exc:  # located as the report is: its header, else its first member
        members = sorted(group.members, key=lambda member: member.position)
        where = group.header or (members[0] if members else None)
        return FhirUnit(index, offset, None, issue_for(exc, _at(where.path if where else path)))
    return FhirUnit(index, offset, message, failure)


def _document(
    data: bytes, zone: str, terminology: Terminology, root: str, first: int, line: int
) -> Iterator[FhirUnit]:
    try:
        resource = load_json(data)
    except JsonError as exc:
        at = Location(line=exc.line, column=exc.column)
        yield _failure(first, line, f"the input is not JSON: {exc}", at)
        return
    try:
        units = list(_document_from(resource, zone, terminology, root, first, line))
    except Exception as exc:  # a fault before its reports are told apart rejects the document
        document = root or _resource_type(resource) or "$this"
        units = [FhirUnit(first, line, None, issue_for(exc, _at(document)))]
    yield from units


def _document_from(
    resource: Any, zone: str, terminology: Terminology, root: str, first: int, line: int
) -> Iterator[FhirUnit]:
    """The units of one parsed document; ``root`` names it ("" = its resourceType)."""
    kind = _resource_type(resource)
    if kind is None:
        what = "a JSON array" if isinstance(resource, list) else "JSON without a resourceType"
        yield _failure(
            first,
            line,
            f"{what} is not a FHIR resource; send an Observation,"
            " a DiagnosticReport, a Bundle or NDJSON",
            root or "$this",
        )
        return
    root = root or kind
    index = ResourceIndex()
    issues: list[Issue] = []
    if kind == "Bundle":
        entries, issues = bundle_entries(resource, root, index)
    elif kind in READ:
        entry = make_entry(resource, root, 0)
        index.add(entry)
        entries = [entry]
    else:
        yield _failure(
            first,
            line,
            f"a {kind} is not a lab result; leukofhir reads Observation,"
            " DiagnosticReport, Bundle and NDJSON",
            root,
            unsupported=True,
        )
        return
    source = Source(
        zone,
        terminology,
        lambda subject, entry: _patient(index, subject, entry),
        message_type=kind,
        trigger=as_str(resource.get("type")) if kind == "Bundle" else "",
        sent_at=as_str(resource.get("timestamp")) if kind == "Bundle" else "",
        resolve=index.resolve,
    )
    groups = group_entries(entries, index) or [Group(None, [])]
    groups[0].issues[:0] = issues
    for number, group in enumerate(groups):
        yield _unit(group, source, first + number, line, root)


def _patient(index: ResourceIndex, subject: dict[str, Any], entry: Entry) -> dict[str, Any] | None:
    found = index.resolve(as_str(subject.get("reference")), entry)
    return found.resource if found is not None and found.resource_type == "Patient" else None


def _resource_type(value: Any) -> str | None:
    if isinstance(value, dict) and (kind := as_str(value.get("resourceType"))):
        return kind
    return None


def _at(path: str) -> Location:
    return Location(expression=path)


def _failure(
    index: int, offset: int, text: str, where: str | Location, *, unsupported: bool = False
) -> FhirUnit:
    code = ErrorCode.UNSUPPORTED_MESSAGE_TYPE if unsupported else ErrorCode.DATA_TYPE
    issue = error(
        code,
        text,
        where if isinstance(where, Location) else _at(where),
        fhir_type="not-supported" if unsupported else "structure",
    )
    return FhirUnit(index, offset, None, issue)


# --- NDJSON detection and lines ----------------------------------------------------------------


def _is_ndjson(data: bytes) -> bool:
    """Several non-blank lines, the first of them a complete JSON object by itself."""
    body = data.lstrip(_BLANK)
    end = body.find(b"\n")
    if end < 0 or not body[end:].strip(_BLANK):
        return False
    first = body[:end].strip(_BLANK)
    if not (first.startswith(b"{") and first.endswith(b"}")):
        return False
    try:
        return isinstance(load_json(first), dict)
    except JsonError:
        return False


def _lines(data: bytes) -> Iterator[bytes]:
    """The lines of ``data`` one at a time (never the whole list of them)."""
    start = 0
    while start < len(data):
        end = data.find(b"\n", start)
        if end < 0:
            end = len(data)
        yield data[start:end]
        start = end + 1

"""A FHIR document (one resource, or a Bundle of any type) → its entries → report groups.

Entries: every ``Bundle.entry[i].resource`` (``fullUrl`` kept); an entry without a
resource, or with ``request.method`` DELETE, is passed over; in a ``history`` Bundle
only the first (newest) version of each resource is read.  A nested Bundle is not
read (warning).

Grouping (issue 3, OUTPUT.md §1), each Observation in at most one report:

1. each DiagnosticReport, in entry order, with the Observations its ``result``
   references; a panel Observation among them (one with ``hasMember``) gives its
   members instead (nested panels too);
2. each panel Observation no DiagnosticReport and no other panel holds, with its
   ``hasMember`` Observations;
3. every other Observation, grouped by subject + effective time + specimen (the
   references and the time as sent), groups in order of first appearance, members
   ordered by reference (``fullUrl`` or ``Type/id``) so that reordering a Bundle's
   entries gives the same reports, digests and so output ids.

An Observation referenced a second time is not used again (a warning names both
places); a reference that does not resolve is a warning, not a failure.
"""

from __future__ import annotations

from typing import Any

from leukofhir.errors import ErrorCode, Issue, Location, warning
from leukofhir.ingest.fhir_index import (
    Entry,
    ResourceIndex,
    as_dict,
    as_list,
    as_str,
    make_entry,
    shown,
)
from leukofhir.ingest.fhir_unit import Group

__all__ = ["bundle_entries", "group_entries", "loose_key"]

MAX_PANEL_DEPTH = 8


def _warn(message: str, path: str, fhir_type: str = "") -> Issue:
    return warning(
        ErrorCode.SEGMENT_SEQUENCE, message, Location(expression=path), fhir_type=fhir_type
    )


def bundle_entries(
    bundle: dict[str, Any], root: str, index: ResourceIndex
) -> tuple[list[Entry], list[Issue]]:
    """The resources of a Bundle, indexed in ``index``; warnings for what is passed over."""
    entries: list[Entry] = []
    issues: list[Issue] = []
    history = bundle.get("type") == "history"
    raw_entries = bundle.get("entry", [])
    if not isinstance(raw_entries, list):
        issues.append(
            _warn("Bundle.entry is not a list; no entry read", f"{root}.entry", "structure")
        )
        raw_entries = []
    for number, raw in enumerate(raw_entries):
        path = f"{root}.entry[{number}]"
        raw = as_dict(raw)
        resource = raw.get("resource")
        if as_str(as_dict(raw.get("request")).get("method")).upper() == "DELETE":
            continue
        if not isinstance(resource, dict) or not as_str(resource.get("resourceType")):
            if "resource" in raw or not raw:
                issues.append(_warn("the entry holds no resource; passed over", path, "structure"))
            continue
        entry = make_entry(resource, f"{path}.resource", number, as_str(raw.get("fullUrl")).strip())
        if entry.resource_type == "Bundle":
            issues.append(
                _warn("a Bundle inside a Bundle is not read", entry.path, "not-supported")
            )
            continue
        if not index.add(entry) and history:
            continue  # an older version of a resource already read
        entries.append(entry)
    return entries, issues


def loose_key(resource: dict[str, Any]) -> tuple[str, str, str]:
    """Subject + effective time + specimen, as sent."""
    subject = as_dict(resource.get("subject"))
    effective = (
        as_str(resource.get("effectiveDateTime"))
        or as_str(resource.get("effectiveInstant"))
        or as_str(as_dict(resource.get("effectivePeriod")).get("start"))
    )
    return (
        as_str(subject.get("reference")) or as_str(as_dict(subject.get("identifier")).get("value")),
        effective,
        as_str(as_dict(resource.get("specimen")).get("reference")),
    )


def is_panel(entry: Entry) -> bool:
    return entry.resource_type == "Observation" and bool(as_list(entry.resource.get("hasMember")))


def group_entries(entries: list[Entry], index: ResourceIndex) -> list[Group]:
    """Report groups of a document's entries (see module doc)."""
    claimed: dict[int, str] = {}  # id(entry) → the path of the report that holds it
    groups: list[Group] = []
    for entry in entries:
        if entry.resource_type == "DiagnosticReport":
            groups.append(_members(entry, "result", index, claimed))
    children = _panel_children(entries, index)
    for entry in entries:
        if is_panel(entry) and id(entry) not in claimed and id(entry) not in children:
            claimed[id(entry)] = entry.path
            groups.append(_members(entry, "hasMember", index, claimed))
    loose: dict[tuple[str, str, str], Group] = {}
    for entry in entries:
        if entry.resource_type != "Observation" or id(entry) in claimed or is_panel(entry):
            continue
        key = loose_key(entry.resource)
        if (group := loose.get(key)) is None:
            loose[key] = group = Group(None, [])
            groups.append(group)
        group.members.append(entry)
    for group in loose.values():
        group.members.sort(key=_member_order)
    return groups


def _member_order(entry: Entry) -> tuple[str, int]:
    """Loose members by reference (then position): the same report whatever the entry order."""
    return entry.reference, entry.position


def _panel_children(entries: list[Entry], index: ResourceIndex) -> set[int]:
    children: set[int] = set()
    for entry in entries:
        if is_panel(entry):
            for ref in as_list(entry.resource.get("hasMember")):
                target = index.resolve(as_str(as_dict(ref).get("reference")), entry)
                if target is not None:
                    children.add(id(target))
    return children


def _members(header: Entry, element: str, index: ResourceIndex, claimed: dict[int, str]) -> Group:
    group = Group(header, [])
    _collect(group, header, element, index, claimed, 0)
    return group


def _collect(
    group: Group,
    holder: Entry,
    element: str,
    index: ResourceIndex,
    claimed: dict[int, str],
    depth: int,
) -> None:
    """Adds the Observations ``holder.element`` references (a panel's members in its place)."""
    report_path = group.header.path if group.header else holder.path
    for number, ref in enumerate(as_list(holder.resource.get(element))):
        where = f"{holder.path}.{element}[{number}]"
        reference = as_str(as_dict(ref).get("reference"))
        target = index.resolve(reference, holder)
        if target is None:
            group.issues.append(
                _warn(
                    f"{shown(reference)} is not in the input; that result is not read",
                    where,
                    "not-found",
                )
            )
            continue
        if target.resource_type != "Observation":
            kind = target.resource_type
            group.issues.append(
                _warn(f"{reference} is a {kind}, not an Observation; not read", where)
            )
            continue
        if (other := claimed.get(id(target))) is not None:
            message = f"{reference} is already used by {other}; it is evaluated once"
            group.issues.append(_warn(message, where, "duplicate"))
            continue
        claimed[id(target)] = report_path
        if is_panel(target):
            if depth < MAX_PANEL_DEPTH:
                _collect(group, target, "hasMember", index, claimed, depth + 1)
            continue
        group.members.append(target)

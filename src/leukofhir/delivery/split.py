"""Fitting a transaction Bundle to a server's limits (pure).

A :class:`ServerProfile` says how large a transaction the server takes: at most
``max_entries`` entries (500: Azure's limit, our default), and, on Medplum's production
servers, at most 8 entries when any entry is conditional (``ifNoneExist``, a conditional
``PUT``/``PATCH``/``DELETE`` ``Type?...``) and at most 50 updates (``PUT``).

A Bundle that fits is sent as it is, byte for byte.  One that does not is cut into parts,
sent one after the other:

* **Dependency order.**  Entry *a* depends on entry *b* when *a*'s resource names *b*'s
  ``urn:uuid:``/``urn:oid:`` ``fullUrl``.  Entries are taken in a topological order
  (the Bundle's own order where it already is one), entries that depend on each other in a
  cycle stay together, and parts are cut greedily along that order; so every entry is in
  the same part as what it names, or a later one.
* **References across parts.**  A ``urn:uuid:`` reference means nothing outside its own
  transaction, and ``Type?identifier=...`` references are not resolved by every server (the
  test server refuses them), so the parts are sent in order and each later part is
  rewritten with the server's own answer: the ``entry.response.location`` of the entry it
  names (``Patient/123``, from ``Patient/123/_history/1`` or an absolute URL) replaces the
  placeholder wherever it appears in a string, as the server itself does inside one
  transaction (FHIR R4 http.html#trules).
* **Atomicity lost.**  Each part is atomic, the document is not: when a later part fails,
  or the process dies between parts, the earlier parts stay applied.  The delivery layer
  keeps the locations of the parts already applied and goes on from the first part not
  applied; sending the whole document again is harmless as long as every write in it is
  conditional (today everything but the Provenance; the lifecycle work makes that one
  idempotent too).

Parts are written from the Bundle parsed with exact numbers (:class:`RawDecimal`), so a
value like ``5.100`` goes out as it came in.
"""

from __future__ import annotations

import heapq
import json
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import orjson

from leukofhir.delivery.profiles import PROFILES, ServerProfile
from leukofhir.emit.datatypes import RawDecimal
from leukofhir.emit.jsonio import dumps

__all__ = [
    "PROFILES",
    "Part",
    "ServerProfile",
    "SplitError",
    "is_conditional",
    "named_by",
    "part_body",
    "placeholders",
    "plan_parts",
    "read_bundle",
    "reference_from_location",
]

_MARKER = re.compile(rb"\\u001[eE]")
_PLACEHOLDER = re.compile(
    r"urn:uuid:[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
    r"|urn:oid:[0-2](?:\.[0-9]+)+"
)


class SplitError(ValueError):
    """The document cannot be sent as a transaction to this server (no transaction Bundle,
    or entries that must stay together exceed the limits)."""


@dataclass(frozen=True, slots=True)
class Part:
    entries: tuple[int, ...]  # indices into the Bundle's entry list, in sending order


def read_bundle(data: bytes, *, exact: bool = False) -> dict[str, Any]:
    """The document as a transaction Bundle, or :class:`SplitError`.  ``exact``: numbers
    as :class:`RawDecimal` (to write parts digit for digit; slower), else as orjson reads
    them (enough to plan)."""
    if exact and _MARKER.search(data):  # what RawDecimal output is made of (emit.jsonio)
        raise SplitError("the document holds a U+001E character; it cannot be split")
    try:
        bundle = (
            json.loads(data, parse_float=RawDecimal, parse_int=RawDecimal)
            if exact
            else orjson.loads(data)
        )
    except (ValueError, UnicodeDecodeError) as exc:
        raise SplitError("the document is not JSON") from exc
    if not (
        isinstance(bundle, dict)
        and bundle.get("resourceType") == "Bundle"
        and bundle.get("type") == "transaction"
    ):
        raise SplitError("the document is not a transaction Bundle")
    entries = bundle.get("entry")
    if not isinstance(entries, list) or not entries:
        raise SplitError("the transaction Bundle has no entries")
    if not all(isinstance(entry, dict) for entry in entries):
        raise SplitError("a Bundle entry is not an object")
    return bundle


def is_conditional(entry: Mapping[str, Any]) -> bool:
    request = entry.get("request") or {}
    method = str(request.get("method", "")).upper()
    url = str(request.get("url", ""))
    if method == "POST":
        return bool(request.get("ifNoneExist"))
    return method in {"PUT", "PATCH", "DELETE"} and "?" in url


def plan_parts(
    bundle: Mapping[str, Any], profile: ServerProfile, done: Collection[int] = ()
) -> tuple[Part, ...]:
    """The parts that send the entries not ``done`` yet, in order; one part holding them
    all, in the Bundle's order, when they fit."""
    entries: Sequence[Mapping[str, Any]] = bundle["entry"]
    todo = [index for index in range(len(entries)) if index not in done]
    if not todo:
        return ()
    if _fits([entries[index] for index in todo], profile):
        return (Part(tuple(todo)),)
    groups = _ordered_groups(entries, todo)
    parts: list[Part] = []
    current: list[int] = []
    for group in groups:
        if not _fits([entries[index] for index in group], profile):
            raise SplitError(
                f"{len(group)} entries that name each other exceed the limits of the"
                f" {profile.name} server profile"
            )
        if current and not _fits([entries[index] for index in current + group], profile):
            parts.append(Part(tuple(current)))
            current = []
        current.extend(group)
    parts.append(Part(tuple(current)))
    return tuple(parts)


def part_body(bundle: Mapping[str, Any], part: Part, resolved: Mapping[str, str]) -> bytes:
    """A transaction Bundle of ``part``'s entries, every placeholder of ``resolved``
    (``fullUrl`` → ``Type/id``) replaced."""
    entries = [bundle["entry"][index] for index in part.entries]
    out = {key: value for key, value in bundle.items() if key != "entry"}
    out["entry"] = _rewrite(entries, resolved) if resolved else entries
    return dumps(out)


def placeholders(bundle: Mapping[str, Any]) -> dict[str, int]:
    """``fullUrl`` → entry index, for the placeholders (``urn:uuid:``, ``urn:oid:``)."""
    found: dict[str, int] = {}
    for index, entry in enumerate(bundle["entry"]):
        full_url = entry.get("fullUrl")
        if isinstance(full_url, str) and _PLACEHOLDER.fullmatch(full_url):
            found[full_url] = index
    return found


def named_by(entry: Mapping[str, Any], known: Mapping[str, int]) -> set[int]:
    """The entries (indices) whose placeholder ``entry`` names anywhere in its strings."""
    named: set[int] = set()
    for text in _strings(entry.get("resource")):
        for match in _PLACEHOLDER.finditer(text):
            index = known.get(match.group())
            if index is not None:
                named.add(index)
    return named


def reference_from_location(location: str) -> str | None:
    """``Type/id`` from an ``entry.response.location``: relative or absolute, with or
    without ``/_history/vid``."""
    path = urlsplit(location).path if "://" in location else location.split("?")[0]
    segments = [segment for segment in path.split("/") if segment]
    if len(segments) >= 4 and segments[-2] == "_history":
        segments = segments[:-2]
    if len(segments) < 2 or not segments[-2][:1].isupper():
        return None
    return f"{segments[-2]}/{segments[-1]}"


def _fits(entries: Sequence[Mapping[str, Any]], profile: ServerProfile) -> bool:
    if len(entries) > profile.max_entries:
        return False
    if profile.max_updates is not None:
        updates = sum(
            1 for entry in entries if str((entry.get("request") or {}).get("method")) == "PUT"
        )
        if updates > profile.max_updates:
            return False
    return (
        profile.max_conditional_entries is None
        or len(entries) <= profile.max_conditional_entries
        or not any(is_conditional(entry) for entry in entries)
    )


def _ordered_groups(entries: Sequence[Mapping[str, Any]], todo: Sequence[int]) -> list[list[int]]:
    """``todo`` as groups of entries that name each other (strongly connected), in a
    topological order that keeps the Bundle's order where it can."""
    known = {url: index for url, index in placeholders({"entry": entries}).items() if index in todo}
    wanted = set(todo)
    needs = {index: named_by(entries[index], known) & wanted - {index} for index in todo}
    group_of = _components(todo, needs)
    members: dict[int, list[int]] = {}
    for index in todo:
        members.setdefault(group_of[index], []).append(index)
    waiting = {g: {group_of[n] for i in m for n in needs[i]} - {g} for g, m in members.items()}
    users: dict[int, set[int]] = {g: set() for g in members}
    for group, required in waiting.items():
        for other in required:
            users[other].add(group)
    ready = [group for group, required in waiting.items() if not required]
    heapq.heapify(ready)
    ordered: list[list[int]] = []
    while ready:
        group = heapq.heappop(ready)
        ordered.append(members[group])
        for user in users[group]:
            waiting[user].discard(group)
            if not waiting[user]:
                heapq.heappush(ready, user)
    return ordered


def _components(nodes: Sequence[int], edges: Mapping[int, set[int]]) -> dict[int, int]:
    """Tarjan's strongly connected components (iterative); a component is named by its
    smallest node, so that the heap above keeps the Bundle's order."""
    index_of: dict[int, int] = {}
    low: dict[int, int] = {}
    stack: list[int] = []
    on_stack: set[int] = set()
    component: dict[int, int] = {}
    counter = 0
    for root in nodes:
        if root in index_of:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index_of[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index_of:
                    index_of[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index_of[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index_of[node]:
                found: list[int] = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    found.append(member)
                    if member == node:
                        break
                for member in found:
                    component[member] = min(found)
    return component


def _strings(value: object) -> list[str]:
    found: list[str] = []
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if "urn:" in item:
                found.append(item)
        elif isinstance(item, dict):
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return found


def _rewrite(value: Any, resolved: Mapping[str, str]) -> Any:
    if isinstance(value, RawDecimal):
        return value
    if isinstance(value, str):
        if "urn:" not in value:
            return value
        return _PLACEHOLDER.sub(lambda match: resolved.get(match.group(), match.group()), value)
    if isinstance(value, dict):
        return {key: _rewrite(item, resolved) for key, item in value.items()}
    if isinstance(value, list):
        return [_rewrite(item, resolved) for item in value]
    return value

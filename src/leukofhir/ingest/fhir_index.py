"""The resources of one FHIR input and how references between them resolve.

Every resource the reader looks at is an :class:`Entry`: the resource (a dict as
parsed), its FHIRPath (``Bundle.entry[3].resource``, ``Observation``,
``$ndjson[7]``, ``Bundle.entry[0].resource.contained[1]``) and the reference the
output uses for it (the entry's ``fullUrl``, else ``Type/id``; ``""`` for a contained
resource, which cannot be referenced from outside its container).

Resolution (FHIR R4 §2.36.4 "Resolving references in Bundles"), in order:

1. ``#id``: a resource contained in the referring resource (or in its container);
2. the reference equal to an entry's ``fullUrl`` (``urn:uuid:``, ``urn:oid:``, absolute);
3. a relative ``Type/id`` from an entry whose ``fullUrl`` is a RESTful absolute URL:
   the same server base + ``Type/id``;
4. the trailing ``Type/id`` of the reference (``_history/n`` dropped), against the
   resources' own ``resourceType``/``id``.  The first entry holding a key keeps it (a
   history Bundle lists the newest version first).

References are taken apart by one expression used with ``fullmatch`` (the FHIR
reference pattern: the type is a whole path segment, the id at most 64 of
``[A-Za-z0-9-.]``), in time linear in their length: the greedy prefix gives back one
character at a time and the type and id are tried only after a ``/``.  A reference
longer than :data:`leukofhir.limits.MAX_REFERENCE` is not followed at all (a resource
leukofhir uses that holds one is rejected by :mod:`.fhir_validate`).  An unanchored
expression searched here before took 10 s for a 40 kB reference.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from leukofhir.limits import MAX_REFERENCE

__all__ = [
    "Entry",
    "ResourceIndex",
    "as_dict",
    "as_list",
    "as_str",
    "restful_base",
    "shown",
    "type_id",
]

# [base/]Type/id[/_history/version], with fullmatch; see the module doc for why it is linear
_REFERENCE = re.compile(
    r"(?:(.*)/)?([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(?:/_history/[^/]+)?", re.DOTALL
)


def as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def as_str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def shown(reference: str) -> str:
    """A reference as an issue quotes it: as sent, or its length when it is too long."""
    if len(reference) > MAX_REFERENCE:
        return (
            f"a reference of {len(reference):,} characters (leukofhir follows references of"
            f" at most {MAX_REFERENCE:,})"
        )
    return reference or "the reference"


def _parts(reference: str) -> re.Match[str] | None:
    """(base, type, id) of a reference that ends in ``Type/id``, else None."""
    return _REFERENCE.fullmatch(reference) if len(reference) <= MAX_REFERENCE else None


@lru_cache(maxsize=4096)  # a report's references are resolved more than once
def type_id(reference: str) -> str:
    """``Type/id`` at the end of a reference (relative or absolute), else ``""``."""
    match = _parts(reference)
    return f"{match[2]}/{match[3]}" if match else ""


@lru_cache(maxsize=1024)  # one per referring resource, asked for each of its references
def restful_base(full_url: str) -> str:
    """The server base of a RESTful ``fullUrl`` (``https://x/fhir`` of
    ``https://x/fhir/Observation/1``), else ``""``."""
    scheme = next((s for s in ("http://", "https://") if full_url.startswith(s)), "")
    match = _parts(full_url) if scheme else None
    base = (match[1] or "") if match else ""
    return base if len(base) > len(scheme) else ""  # a host at least, as ``https?://.+``


@dataclass(slots=True, eq=False)
class Entry:
    """One resource of the input, where it stands and how to refer to it."""

    resource: dict[str, Any]
    path: str
    reference: str = ""
    position: int = 0  # order of appearance (entries, then contained)
    full_url: str = ""
    container: Entry | None = None
    contained: dict[str, Entry] = field(default_factory=dict)

    @property
    def resource_type(self) -> str:
        return as_str(self.resource.get("resourceType"))

    @property
    def key(self) -> str:
        """``Type/id`` from the resource itself, ``""`` without an id."""
        rid = as_str(self.resource.get("id"))
        return f"{self.resource_type}/{rid}" if rid and self.resource_type else ""


def make_entry(resource: dict[str, Any], path: str, position: int, full_url: str = "") -> Entry:
    """An entry and its contained resources (``#id``)."""
    entry = Entry(resource, path, position=position, full_url=full_url)
    entry.reference = full_url or entry.key
    for number, inner in enumerate(as_list(resource.get("contained"))):
        if isinstance(inner, dict) and (inner_id := as_str(inner.get("id"))):
            entry.contained.setdefault(
                inner_id,
                Entry(inner, f"{path}.contained[{number}]", position=position, container=entry),
            )
    return entry


class ResourceIndex:
    """Entries by ``fullUrl`` and by ``Type/id``; resolves references (see module doc)."""

    def __init__(self) -> None:
        self.by_url: dict[str, Entry] = {}
        self.by_key: dict[str, Entry] = {}

    def add(self, entry: Entry) -> bool:
        """Index ``entry``; False when its ``fullUrl``/``Type/id`` is already taken."""
        url, key = entry.full_url, entry.key
        if (url and url in self.by_url) or (not url and key and key in self.by_key):
            return False
        if url:
            self.by_url[url] = entry
        if key:
            self.by_key.setdefault(key, entry)
        return True

    def resolve(self, reference: str, source: Entry) -> Entry | None:
        reference = reference.strip()
        if not reference or len(reference) > MAX_REFERENCE:
            return None
        if reference.startswith("#"):
            holder = source.container or source
            return holder.contained.get(reference[1:])
        if (found := self.by_url.get(reference)) is not None:
            return found
        key = type_id(reference)
        if not key:
            return None
        base = restful_base((source.container or source).full_url)
        if base and "://" not in reference:
            found = self.by_url.get(f"{base}/{key}")
        return found if found is not None else self.by_key.get(key)

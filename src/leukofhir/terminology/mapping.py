"""User mapping files: local (non-LOINC) result codes → the LOINC code of a CBC field.

A local code reaches a CBC field only through such a file (RULES.md §1); leukofhir
never guesses from a code's text.  Two formats, chosen by the file suffix:

**FHIR ConceptMap** (``.json``, R4 or R5)::

    {"resourceType": "ConceptMap",
     "group": [{"source": "L",                     # the local system: the v2 coding
                "target": "http://loinc.org",      # system as sent (CWE-3, e.g. "L",
                "element": [                       # "99zzz") or a FHIR system URI;
                  {"code": "WBCX",                 # "" or absent: any system
                   "target": [{"code": "6690-2", "equivalence": "equivalent"}]}]}]}

Only targets whose R4 ``equivalence`` is ``equivalent`` or ``equal`` (R5:
``relationship`` ``equivalent``) are used; any other (``wider``, ``narrower``,
``inexact``, ``unmatched`` ...) is skipped and noted in ``Terminology.issues``, since
a broader or narrower concept is not the same measurement.  ``group.target`` must be
``http://loinc.org``.

**CSV** (``.csv``, UTF-8), header exactly ``source_system,source_code,loinc``; blank
lines and lines starting with ``#`` are ignored::

    source_system,source_code,loinc
    L,WBCX,6690-2
    ,NEUT%,770-8          # empty source_system: any system

In both, the mapped LOINC code must be one of the CBC field codes of the packaged
table (never a panel code, 74398-9 or 71676-1), and one local code may map to only
one LOINC code.  Anything else raises :class:`~leukofhir.errors.ConfigError` whose
issue names the file and the place (a FHIRPath into the ConceptMap, or ``line N``).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from leukofhir.errors import (
    ConfigError,
    ErrorCode,
    Issue,
    Location,
    error,
    information,
)
from leukofhir.model import LOINC
from leukofhir.terminology.tables import Field

__all__ = ["CSV_HEADER", "read_mappings"]

CSV_HEADER = ("source_system", "source_code", "loinc")
_ACCEPTED = {"equivalent", "equal"}

# (source system or "" for any, local code) → (LOINC, where it was defined)
_Entry = tuple[tuple[str, str], str, Location]


def _bad(
    path: Path, where: Location, message: str, code: ErrorCode = ErrorCode.DATA_TYPE
) -> ConfigError:
    return ConfigError(error(code, f"mapping file {path}: {message}", where, fhir_type="invalid"))


def read_mappings(
    paths: Sequence[Path], fields: Mapping[str, Field], never: Mapping[str, str]
) -> tuple[dict[tuple[str, str], Field], list[Issue]]:
    """All mappings of ``paths`` merged: (system, code) → field, and load notes."""
    local: dict[tuple[str, str], tuple[Field, str]] = {}
    notes: list[Issue] = []
    for path in paths:
        for key, loinc, where in _entries(path, notes):
            field = fields.get(loinc)
            if field is None:
                why = f" ({never[loinc]})" if loinc in never else ""
                raise _bad(path, where, f"{loinc!r} is not a CBC field LOINC code{why}")
            seen = local.get(key)
            if seen is not None and seen[0].loinc != loinc:
                raise _bad(
                    path,
                    where,
                    f"local code {key[1]!r} (system {key[0]!r}) maps to both {seen[0].loinc}"
                    f" ({seen[1]}) and {loinc}",
                    ErrorCode.DUPLICATE_KEY,
                )
            local[key] = (field, f"{path.name} {where}")
    return {key: value[0] for key, value in local.items()}, notes


def _entries(path: Path, notes: list[Issue]) -> Iterator[_Entry]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise _bad(path, Location(), f"cannot be read ({exc})") from None
    suffix = path.suffix.lower()
    if suffix == ".json" or (suffix != ".csv" and text.lstrip().startswith("{")):
        yield from _concept_map(path, text, notes)
    elif suffix == ".csv":
        yield from _csv(path, text)
    else:
        raise _bad(path, Location(), "is neither a ConceptMap (.json) nor a CSV (.csv) file")


def _concept_map(path: Path, text: str, notes: list[Issue]) -> Iterator[_Entry]:
    try:
        resource = json.loads(text)
    except json.JSONDecodeError as exc:
        where = Location(expression=f"line {exc.lineno}, column {exc.colno}")
        raise _bad(path, where, f"is not JSON ({exc.msg})") from None
    if not isinstance(resource, dict) or resource.get("resourceType") != "ConceptMap":
        raise _bad(path, Location(expression="resourceType"), "is not a FHIR ConceptMap")
    for g, group in enumerate(_list(path, resource, "group", "ConceptMap")):
        at = f"ConceptMap.group[{g}]"
        system = _text(path, group, "source", at, required=False)
        if _text(path, group, "target", at, required=False) != LOINC:
            raise _bad(path, Location(expression=f"{at}.target"), f"{at}.target must be {LOINC}")
        for e, element in enumerate(_list(path, group, "element", at)):
            here = f"{at}.element[{e}]"
            code = _text(path, element, "code", here, required=True)
            for t, target in enumerate(_list(path, element, "target", here, required=False)):
                there = f"{here}.target[{t}]"
                kind = target.get("equivalence", target.get("relationship", ""))
                loinc = _text(path, target, "code", there, required=False)
                location = Location(expression=f"{there}.code")
                if kind not in _ACCEPTED:
                    notes.append(
                        information(
                            ErrorCode.ACCEPTED,
                            f"mapping file {path}: {code!r} → {loinc!r} is {kind or 'unqualified'},"
                            " not equivalent; not used",
                            location,
                            fhir_type="informational",
                        )
                    )
                    continue
                yield (system, code), loinc, location


def _list(
    path: Path, parent: dict[str, Any], key: str, at: str, *, required: bool = True
) -> list[dict[str, Any]]:
    items = parent.get(key)
    if items is None and not required:
        return []
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise _bad(
            path, Location(expression=f"{at}.{key}"), f"{at}.{key} must be a list of objects"
        )
    return items


def _text(path: Path, parent: dict[str, Any], key: str, at: str, *, required: bool) -> str:
    value = parent.get(key, "")
    if not isinstance(value, str) or (required and not value.strip()):
        raise _bad(
            path, Location(expression=f"{at}.{key}"), f"{at}.{key} must be a non-empty string"
        )
    return value.strip()


def _csv(path: Path, text: str) -> Iterator[_Entry]:
    rows = csv.reader(io.StringIO(text))
    header_seen = False
    for number, row in enumerate(rows, start=1):
        where = Location(expression=f"line {number}")
        cells = [cell.strip() for cell in row]
        if not any(cells) or cells[0].startswith("#"):
            continue
        if not header_seen:
            if tuple(cell.lower() for cell in cells) != CSV_HEADER:
                raise _bad(path, where, f"the header must be {','.join(CSV_HEADER)}")
            header_seen = True
            continue
        if len(cells) != len(CSV_HEADER):
            raise _bad(path, where, f"line {number} has {len(cells)} cells, not 3")
        system, code, loinc = cells
        if not code:
            raise _bad(path, where, f"line {number} has no source_code")
        yield (system, code), loinc, where
    if not header_seen:
        raise _bad(path, Location(expression="line 1"), f"has no {','.join(CSV_HEADER)} header")

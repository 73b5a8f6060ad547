"""Validation of the resources the rule set uses, with the fhir.resources R4B models.

Only the Observations that carry a CBC field and the DiagnosticReport (or panel
Observation) that holds them are validated (about 0.15-0.4 ms each), never a whole
Bundle.  A quantity's ``value`` must be a JSON number (the models, in pydantic's lax
mode, would take the string ``"2.1"``).  R4B is R4 plus a few additions, so an R4
(4.0.1) resource validates as one.

An element that R5 added (``triggeredBy``, ``referenceRange.normalValue``,
``DiagnosticReport.note`` ...) is refused by the R4B models as an unknown element:
it is removed, reported as a warning, and the resource is validated again.  Any other
failure is an error located by FHIRPath under the resource's path
(``Bundle.entry[3].resource.valueQuantity.unit``).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from fhir.resources.R4B.diagnosticreport import DiagnosticReport
from fhir.resources.R4B.observation import Observation
from pydantic import BaseModel, ValidationError

from leukofhir.errors import ErrorCode, Issue, Location, error, warning

__all__ = ["R5_ONLY", "validate_resource"]

_MODELS: dict[str, type[BaseModel]] = {
    "Observation": Observation,
    "DiagnosticReport": DiagnosticReport,
}

# Elements R5 added to these resources (and their backbone elements); an R4 reader
# ignores them with a warning.
R5_ONLY = frozenset(
    {
        "instantiatesCanonical",
        "instantiatesReference",
        "triggeredBy",
        "bodyStructure",
        "valueAttachment",
        "valueReference",
        "normalValue",
        "composition",
        "study",
        "supportingInfo",
        "note",  # DiagnosticReport.note (Observation.note is R4, and validates)
    }
)

_ISSUE_TYPE = {"missing": "required", "extra_forbidden": "structure"}


def fhirpath(base: str, loc: Sequence[int | str]) -> str:
    """``base`` + a pydantic error location: ``.referenceRange[0].low.value``."""
    path = base
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part.isidentifier():
            path += f".{part}"
    return path


def validate_resource(resource: dict[str, Any], path: str) -> tuple[Issue | None, list[Issue]]:
    """(the error that rejects ``resource``, or None; the warnings on R5-only elements)."""
    model = _MODELS.get(resource.get("resourceType", ""))
    if model is None:  # pragma: no cover - callers validate these two types only
        return None, []
    if (wrong := _string_number(resource, path)) is not None:
        return wrong, []
    try:
        model.model_validate(resource)
    except ValidationError as exc:
        return _retry_without_r5(model, resource, path, exc)
    return None, []


def _quantities(resource: dict[str, Any]) -> list[tuple[str, Any]]:
    found = [("valueQuantity", resource.get("valueQuantity"))]
    ranges = resource.get("referenceRange")
    for number, item in enumerate(ranges if isinstance(ranges, list) else []):
        if isinstance(item, dict):
            found += [
                (f"referenceRange[{number}].{side}", item.get(side)) for side in ("low", "high")
            ]
    return found


def _string_number(resource: dict[str, Any], path: str) -> Issue | None:
    """A quantity whose ``value`` is not a JSON number (the models would accept ``"2.1"``)."""
    for name, quantity in _quantities(resource):
        if not isinstance(quantity, dict) or "value" not in quantity:
            continue
        value = quantity["value"]
        if isinstance(value, bool) or not isinstance(value, int | Decimal):
            element = f"{path}.{name}.value"
            return error(
                ErrorCode.DATA_TYPE,
                f"the {resource.get('resourceType')} is not valid FHIR R4 at {element}: a"
                f" decimal must be a JSON number, not {json.dumps(value, default=str)[:40]};"
                " this report is rejected, correct the resource and send it again",
                Location(expression=element),
                fhir_type="value",
            )
    return None


def _r5_element(item: Any) -> bool:
    loc = item["loc"]
    return item["type"] == "extra_forbidden" and bool(loc) and loc[-1] in R5_ONLY


def _retry_without_r5(
    model: type[BaseModel], resource: dict[str, Any], path: str, exc: ValidationError
) -> tuple[Issue | None, list[Issue]]:
    items = exc.errors()
    r5 = [item for item in items if _r5_element(item)]
    if not r5:
        return _error(items, path, resource), []
    warnings = [
        warning(
            ErrorCode.SEGMENT_SEQUENCE,
            f"{item['loc'][-1]} is an R5 element; leukofhir reads FHIR R4 and ignores it",
            Location(expression=fhirpath(path, item["loc"])),
            fhir_type="not-supported",
        )
        for item in r5
    ]
    stripped = copy.deepcopy(resource)
    for item in r5:
        _remove(stripped, item["loc"])
    try:
        model.model_validate(stripped)
    except ValidationError as again:
        return _error(again.errors(), path, resource), warnings
    return None, warnings


def _remove(resource: Any, loc: Sequence[int | str]) -> None:
    holder = resource
    for part in loc[:-1]:
        try:
            holder = holder[part]
        except (KeyError, IndexError, TypeError):
            return
    if isinstance(holder, dict):
        holder.pop(loc[-1], None)


def _error(items: list[Any], path: str, resource: dict[str, Any]) -> Issue:
    first = items[0]
    kind = resource.get("resourceType", "resource")
    more = f" (and {len(items) - 1} more problems)" if len(items) > 1 else ""
    element = fhirpath(path, first["loc"])
    return error(
        ErrorCode.DATA_TYPE if first["type"] != "missing" else ErrorCode.REQUIRED_FIELD_MISSING,
        f"the {kind} is not valid FHIR R4 at {element}: {first['msg']}{more};"
        " this report is rejected, correct the resource and send it again",
        Location(expression=element),
        fhir_type=_ISSUE_TYPE.get(first["type"], "value"),
    )

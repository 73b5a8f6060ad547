"""Validation of the resources the rule set uses, with the fhir.resources R4B models.

Only the Observations that carry a CBC field and the DiagnosticReport (or panel
Observation) that holds them are validated (about 0.15-0.4 ms each), never a whole
Bundle.  A quantity's ``value`` must be a JSON number (the models, in pydantic's lax
mode, would take the string ``"2.1"``).  R4B is R4 plus a few additions, so an R4
(4.0.1) resource validates as one.

An element that R5 added (``triggeredBy``, ``referenceRange.normalValue``,
``DiagnosticReport.note`` ...) is refused by the R4B models as an unknown element:
it is removed (from a copy of only the containers on its path), reported as a warning,
and the resource is validated again.  Any other failure is an error located by
FHIRPath under the resource's path (``Bundle.entry[3].resource.valueQuantity.unit``).

Checked before the models see the resource: every resource inside it (``contained``)
must have a ``resourceType`` that names an R4 resource (``Transport`` is R5-only), as
the models raise a ``KeyError`` (``'R4.FooType'``) or a ``TypeError`` on one that does
not; and the references the output writes (the entry's ``fullUrl``, ``subject``) must
be at most :data:`leukofhir.limits.MAX_REFERENCE` characters (error 104, ``too-long``;
a longer ``result`` or ``hasMember`` reference is not followed, and grouping says so).
Anything else the models raise besides a ``ValidationError`` rejects the report with
code 207 (``exception``), located at the resource: a fault in a library is never taken
for a valid resource.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from decimal import Decimal
from functools import lru_cache
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from fhir.resources.R4B.diagnosticreport import DiagnosticReport
from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.resource import Resource
from pydantic import BaseModel, ValidationError

from leukofhir.errors import ErrorCode, Issue, Location, error, issue_for, warning
from leukofhir.limits import MAX_REFERENCE

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


def validate_resource(
    resource: dict[str, Any], path: str, full_url: str = ""
) -> tuple[Issue | None, list[Issue]]:
    """(the error that rejects ``resource``, or None; the warnings on R5-only elements)."""
    kind = resource.get("resourceType")
    model = _MODELS.get(kind) if isinstance(kind, str) else None
    if model is None:  # pragma: no cover - callers validate these two types only
        return None, []
    for check in (_string_number(resource, path), _long_reference(resource, path, full_url)):
        if check is not None:
            return check, []
    if "contained" in resource and (wrong := _unknown_resource(resource["contained"], path)):
        return wrong, []
    try:
        model.model_validate(resource)
    except ValidationError as exc:
        return _retry_without_r5(model, resource, path, exc)
    except Exception as exc:  # the models' own fault: never taken for a valid resource
        return issue_for(exc, Location(expression=path)), []
    return None, []


def _long_reference(resource: dict[str, Any], path: str, full_url: str) -> Issue | None:
    """The entry's ``fullUrl`` or the ``subject`` reference, which the output writes, when
    longer than ``MAX_REFERENCE`` (longer references elsewhere are not followed at all)."""
    if len(full_url) > MAX_REFERENCE:
        return _too_long(len(full_url), path.removesuffix(".resource") + ".fullUrl")
    subject = resource.get("subject")
    reference = subject.get("reference") if type(subject) is dict else None
    if type(reference) is str and len(reference) > MAX_REFERENCE:
        return _too_long(len(reference), f"{path}.subject.reference")
    return None


def _too_long(length: int, element: str) -> Issue:
    return error(
        ErrorCode.VALUE_TOO_LONG,
        f"{element} is a reference of {length:,} characters; leukofhir follows references of"
        f" at most {MAX_REFERENCE:,}; this report is rejected",
        Location(expression=element),
        fhir_type="too-long",
    )


def _unknown_resource(contained: Any, path: str) -> Issue | None:
    """The first resource inside ``contained`` (at any depth: a contained Bundle's entries
    too) whose ``resourceType`` is not an R4 resource type; the models would raise on it."""
    stack: list[tuple[Any, str]] = [(contained, f"{path}.contained")]
    while stack:
        node, where = stack.pop()
        if isinstance(node, dict):
            if "resourceType" in node and not _is_resource_type(kind := node["resourceType"]):
                element = f"{where}.resourceType"
                sent = json.dumps(kind, default=str)[:40]
                what = "not a string" if not isinstance(kind, str) else "not an R4 resource type"
                return error(
                    ErrorCode.DATA_TYPE,
                    f"the resource at {where} is not valid FHIR R4: its resourceType {sent} is"
                    f" {what}; this report is rejected, correct the resource and send it again",
                    Location(expression=element),
                    fhir_type="structure",
                )
            children = [(v, f"{where}.{k}") for k, v in node.items() if isinstance(v, dict | list)]
        elif isinstance(node, list):
            children = [(v, f"{where}[{n}]") for n, v in enumerate(node)]
        else:
            continue
        stack.extend(reversed(children))  # document order
    return None


def _is_resource_type(name: Any) -> bool:
    return isinstance(name, str) and _r4_resource(name)


@lru_cache(maxsize=256)
def _r4_resource(name: str) -> bool:
    """Whether ``name`` is a resource type of the R4B models (R4 and R4B's few additions)."""
    try:
        return issubclass(get_fhir_model_class(name), Resource)
    except ValueError:
        return False


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
    stripped = dict(resource)
    for item in r5:
        _remove(stripped, item["loc"])
    try:
        model.model_validate(stripped)
    except ValidationError as again:
        return _error(again.errors(), path, resource), warnings
    except Exception as exc:
        return issue_for(exc, Location(expression=path)), warnings
    return None, warnings


def _remove(resource: dict[str, Any], loc: Sequence[int | str]) -> None:
    """Remove the element at ``loc``, copying (shallow) only the containers on its way, so
    that the input is not changed and nothing else is copied (a deep copy of an element
    nested 600 deep overflowed the stack)."""
    holder: Any = resource
    for part in loc[:-1]:
        try:
            child = holder[part]
        except (KeyError, IndexError, TypeError):
            return
        if isinstance(child, dict | list):
            child = child.copy()
            holder[part] = child
        holder = child
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

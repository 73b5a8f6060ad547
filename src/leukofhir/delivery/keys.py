"""The ordering key of a transaction Bundle: which patient it is about, as a hash (the
outbox never holds a plain identifier in its key column).

The key is taken from the Patient entry's first identifier (``system|value``); else from
the first ``subject``/``patient`` of an entry that names the patient without a placeholder
(a literal ``Patient/123``, or a logical reference by identifier).  A Bundle that names no
patient that way (no PID, a Patient without identifier) has no key: the caller then orders
it by itself (its own document key), since nothing ties it to another document.

Two Bundles of one patient get the same key as long as they name the patient the same way;
one that names it by identifier and another by a server id are not recognised as the same
patient (only the server could tell).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

__all__ = ["facts_key", "patient_key"]


def patient_key(bundle: Mapping[str, Any]) -> str | None:
    """32 hex digits of SHA-256 over how the Bundle names its patient, or None."""
    entries = [entry for entry in bundle.get("entry") or [] if isinstance(entry, dict)]
    for entry in entries:
        resource = entry.get("resource") or {}
        if resource.get("resourceType") == "Patient":
            named = _identifier(resource.get("identifier"))
            if named:
                return _hash(named)
    for entry in entries:
        resource = entry.get("resource") or {}
        for element in ("subject", "patient"):
            named = _reference(resource.get(element))
            if named:
                return _hash(named)
    return None


def facts_key(patient: str) -> str:
    """The ordering key of a patient as the lifecycle names it (``ReportFacts.patient``,
    what stays the same for one patient): 32 hex digits of SHA-256, never the identifier.
    Those who settle the Bundles (batch, serve) know the patient this way, whatever the
    Bundle's own wording (a Patient entry or a reference)."""
    return _hash(f"facts:{patient}")


def _identifier(value: object) -> str | None:
    first = value[0] if isinstance(value, list) and value else value
    if isinstance(first, dict) and first.get("value"):
        return f"identifier:{first.get('system', '')}|{first['value']}"
    return None


def _reference(value: object) -> str | None:
    if not isinstance(value, dict):
        return None
    reference = value.get("reference")
    if isinstance(reference, str) and reference and not reference.startswith("urn:"):
        return f"reference:{reference}"
    return _identifier(value.get("identifier"))


def _hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()[:32]

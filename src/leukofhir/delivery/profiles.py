"""Server profiles: how large a transaction a FHIR server takes (data only; :mod:`.split`
fits a Bundle to one).  ``default`` and ``azure``: at most 500 entries; ``medplum``: at most 8
entries when any entry is conditional, and at most 50 updates (Medplum's production
router)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["PROFILES", "ServerProfile"]


@dataclass(frozen=True, slots=True)
class ServerProfile:
    name: str = "default"
    max_entries: int = 500
    max_conditional_entries: int | None = None  # when any entry is conditional
    max_updates: int | None = None  # PUT entries

    def __post_init__(self) -> None:
        limits = (self.max_entries, self.max_conditional_entries, self.max_updates)
        if any(limit is not None and limit < 1 for limit in limits):
            raise ValueError("server profile limits must be at least 1")


PROFILES: Mapping[str, ServerProfile] = {
    "default": ServerProfile("default"),
    "azure": ServerProfile("azure", max_entries=500),
    "medplum": ServerProfile("medplum", max_conditional_entries=8, max_updates=50),
}

"""FHIR ``dateTime`` values (always with an offset once they hold a time, see
:mod:`leukofhir.ingest.dtm`) as comparable UTC instants, and the hours between two."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache

__all__ = ["hours_between", "utc_instant"]


@lru_cache(maxsize=8192)
def utc_instant(value: str) -> str:
    """``2026-03-02T09:15:00+01:00`` → ``2026-03-02T08:15:00Z``; a date stays a date
    (``2026-03-02``, which sorts before every time of that day); ``""`` when empty or
    unreadable.  Fractions of a second are kept to the microsecond."""
    moment = _parse(value)
    if moment is None:
        return value[:10] if len(value) >= 4 and value[:4].isdigit() else ""
    text = moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
    return text.replace(".000000Z", "Z")


def hours_between(first: str, last: str) -> float:
    """Hours from ``first`` to ``last`` (UTC instants or dates; a date is its midnight)."""
    a, b = _parse(first), _parse(last)
    if a is None or b is None:
        return 0.0
    return (b - a).total_seconds() / 3600


def _parse(value: str) -> datetime | None:
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)

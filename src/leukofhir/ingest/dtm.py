"""HL7 v2 DTM (v2.5.1 §2.A.22) → FHIR ``date`` / ``dateTime``.

``YYYY[MM[DD[HH[MM[SS[.S…]]]]]][+/-ZZZZ]`` keeps the precision it was sent
with, with two rules FHIR forces on us (both documented in the README):

* FHIR ``dateTime`` needs seconds once a time is given: a minute-precision
  time gets ``:00``; an hour-only time is cut to its date (never invent minutes).
* FHIR needs an offset once a time is given: the one sent, else the
  configured default zone (an IANA name; its offset on that date and time).
"""

from __future__ import annotations

import re
from datetime import datetime
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_DTM = re.compile(
    r"^(?P<y>\d{4})(?:(?P<mo>\d{2})(?:(?P<d>\d{2})(?:(?P<h>\d{2})(?:(?P<mi>\d{2})"
    r"(?:(?P<s>\d{2})(?:\.(?P<f>\d{1,4}))?)?)?)?)?)?(?P<tz>[+-]\d{4})?$"
)


class DtmError(ValueError):
    """Not an HL7 DTM value."""


@lru_cache(maxsize=64)
def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise DtmError(f"unknown time zone {name!r}") from exc


def to_fhir_date(text: str) -> str:
    """The date part of a DTM as a FHIR ``date`` (``YYYY``, ``YYYY-MM`` or ``YYYY-MM-DD``)."""
    text = text.strip()
    if not text:
        return ""
    match = _DTM.match(text)
    if not match:
        raise DtmError(f"{text!r} is not an HL7 date (YYYY[MM[DD]])")
    y, mo, d = match["y"], match["mo"], match["d"]
    _check_calendar(y, mo, d)
    return "-".join(part for part in (y, mo, d) if part)


@lru_cache(maxsize=4096)
def to_fhir_datetime(text: str, default_zone: str) -> str:
    """A DTM as a FHIR ``dateTime``; ``""`` for an empty value; :class:`DtmError` if malformed."""
    text = text.strip()
    if not text:
        return ""
    match = _DTM.match(text)
    if not match:
        raise DtmError(f"{text!r} is not an HL7 DTM (YYYYMMDDHHMMSS[+ZZZZ])")
    y, mo, d, h, mi = match["y"], match["mo"], match["d"], match["h"], match["mi"]
    _check_calendar(y, mo, d)
    if int(h or 0) > 23 or int(mi or 0) > 59 or int(match["s"] or 0) > 59:
        raise DtmError(f"{text!r} has a time out of range")
    if h is None or mi is None:
        return "-".join(part for part in (y, mo, d) if part)
    seconds = match["s"] or "00"
    fraction = f".{match['f']}" if match["f"] else ""
    stamp = f"{y}-{mo}-{d}T{h}:{mi}:{seconds}{fraction}"
    return stamp + (_offset(match["tz"]) if match["tz"] else _zone_offset(stamp, default_zone))


def _check_calendar(y: str, mo: str | None, d: str | None) -> None:
    try:
        datetime(int(y), int(mo or 1), int(d or 1))
    except ValueError as exc:
        raise DtmError(f"{y}{mo or ''}{d or ''} is not a calendar date") from exc


def _offset(tz: str) -> str:
    if int(tz[1:3]) > 14 or int(tz[3:5]) > 59:
        raise DtmError(f"{tz!r} is not a UTC offset")
    return f"{tz[0]}{tz[1:3]}:{tz[3:5]}"


def _zone_offset(stamp: str, zone_name: str) -> str:
    local = datetime.fromisoformat(stamp[:19]).replace(tzinfo=zone(zone_name))
    offset = local.utcoffset()
    if offset is None:  # pragma: no cover - ZoneInfo always answers
        return "Z"
    minutes = int(offset.total_seconds()) // 60
    sign = "+" if minutes >= 0 else "-"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"

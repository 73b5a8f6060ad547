"""A patient's age on the day a specimen was collected, to the day.

Both ends are calendar dates: the birth date (PID-7 / ``Patient.birthDate``) and the date
of collection *as the laboratory wrote it*, in its own offset (``2025-03-01T00:30:00+01:00``
is 1 March, although it is 28 February in UTC): a birthday is a local date, and converting
the collection time to UTC would move children across a band edge near midnight.

* ``days``: calendar days from the birth date (0 on the day of birth);
* ``months``: completed calendar months.  A month is completed on the same day of a later
  month; a day the later month lacks (the 29th to 31st, 29 February) is reached on the
  first day of the month after (born 31 January: one month old on 1 March in a common
  year; born 29 February 2024: one year old on 1 March 2025, 11 months old on 28 February).

A date precise only to the year or month (FHIR ``2024``, ``2024-05``) stands for every day
it may be: :func:`age_span` gives the youngest and the oldest age it allows.
"""

from __future__ import annotations

import re
from calendar import monthrange
from datetime import date
from functools import lru_cache
from typing import NamedTuple

__all__ = ["Age", "age_on", "age_span", "completed_months", "date_span"]

_DATE = re.compile(r"(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?")


class Age(NamedTuple):
    days: int
    months: int  # completed calendar months

    @property
    def years(self) -> int:
        return self.months // 12


def completed_months(birth: date, day: date) -> int:
    """Calendar months completed from ``birth`` to ``day`` (see the module doc)."""
    months = (day.year - birth.year) * 12 + day.month - birth.month
    return months - 1 if day.day < birth.day else months


def age_on(birth: date, day: date) -> Age | None:
    """The age on ``day``; None when ``day`` is before the birth date."""
    if day < birth:
        return None
    return Age((day - birth).days, completed_months(birth, day))


def date_span(text: str) -> tuple[date, date] | None:
    """The first and the last day a FHIR date or dateTime may stand for, read from its
    local date (the part before ``T``: no conversion to UTC); None when unreadable."""
    return _day_span(text.strip().partition("T")[0])


@lru_cache(maxsize=4096)  # birth dates and collection days repeat across messages
def _day_span(text: str) -> tuple[date, date] | None:
    match = _DATE.fullmatch(text)
    if match is None:
        return None
    year, month, day = match[1], match[2], match[3]
    try:
        if day is not None:
            one = date(int(year), int(month), int(day))
            return one, one
        if month is not None:
            first = date(int(year), int(month), 1)
            return first, first.replace(day=monthrange(first.year, first.month)[1])
        return date(int(year), 1, 1), date(int(year), 12, 31)
    except ValueError:  # 2025-02-30, month 13
        return None


def age_span(birth: str, collected: str) -> tuple[Age | None, Age | None] | None:
    """(the youngest, the oldest) age the two dates allow, each compared at the precision
    given: a birth date known to the month (``2025-01``) collected on 28 January 2025 is
    a birth on 1 to 28 January (0 to 27 days), not a possible birth after the collection.
    Both ends are None only when every day the birth date may stand for is after every
    day of the collection date.  None when either date is unreadable."""
    born, when = date_span(birth), date_span(collected)
    if born is None or when is None:
        return None
    oldest = age_on(born[0], when[1])
    if oldest is None:  # certainly born after the collection
        return None, None
    # the latest birth day still on or before the collection: age 0 at the least
    youngest = age_on(min(born[1], when[0]), when[0]) if born[0] <= when[0] else Age(0, 0)
    return youngest, oldest

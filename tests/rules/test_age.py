"""Age to the day and the paediatric band it falls in: every band edge of
``data/paediatric-v1.toml``, leap-year and month-end birthdays, and birthdays in the
laboratory's own time zone."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from leukofhir.rules import load_rule_set
from leukofhir.rules.age import Age, age_on, age_span, completed_months, date_span
from leukofhir.rules.paediatric import load_paediatric
from tests.conftest import make_context
from tests.rules.clinical_messages import ALC, ANC, WBC, evaluation_of, oru

PROFILE = load_paediatric(load_rule_set())
CONTEXT = make_context()

# The table (paediatric-v1.toml), as the issue names the bands.
BANDS = ["0-7d", "8-28d", "1-3m", "3-12m", "1-2y", "2-6y", "6-12y", "12-18y"]


def band_on(birth: date, day: date) -> str:
    age = age_on(birth, day)
    assert age is not None
    found = PROFILE.band(age)
    return found.id if found is not None else "adult"


def test_the_profile_has_the_bands_of_the_issue_in_order() -> None:
    assert [band.id for band in PROFILE.bands] == BANDS
    assert (PROFILE.id, PROFILE.version) == ("paediatric", "1.0.0")


BORN = date(2024, 1, 15)  # a leap year; every edge: the last day before it, the day it is reached
EDGES = [
    # (last day of the younger band, first day of the older band, younger, older)
    (BORN + timedelta(days=7), BORN + timedelta(days=8), "0-7d", "8-28d"),  # turns 8 days
    # one completed month (15 February, day 31), not day 29
    (date(2024, 2, 14), date(2024, 2, 15), "8-28d", "1-3m"),
    (date(2024, 4, 14), date(2024, 4, 15), "1-3m", "3-12m"),  # 3 months
    (date(2025, 1, 14), date(2025, 1, 15), "3-12m", "1-2y"),  # 12 months
    (date(2026, 1, 14), date(2026, 1, 15), "1-2y", "2-6y"),  # 2 years
    (date(2030, 1, 14), date(2030, 1, 15), "2-6y", "6-12y"),  # 6 years
    (date(2036, 1, 14), date(2036, 1, 15), "6-12y", "12-18y"),  # 12 years
    (date(2042, 1, 14), date(2042, 1, 15), "12-18y", "adult"),  # 18 years
]


@pytest.mark.parametrize(("before", "on", "younger", "older"), EDGES, ids=[e[3] for e in EDGES])
def test_every_band_edge(before: date, on: date, younger: str, older: str) -> None:
    assert band_on(BORN, before) == younger
    assert band_on(BORN, on) == older


def test_the_day_of_birth_is_day_0() -> None:
    assert age_on(BORN, BORN) == Age(0, 0)
    assert band_on(BORN, BORN) == "0-7d"
    assert age_on(BORN, BORN - timedelta(days=1)) is None  # collected before birth


def test_the_neonatal_bands_count_days_not_months() -> None:
    # born 1 February 2025 (a common year): one calendar month on 1 March = day 28, still
    # the neonatal band; day 29 (2 March) is the first of 1-3 months
    born = date(2025, 2, 1)
    assert age_on(born, date(2025, 3, 1)) == Age(28, 1)
    assert band_on(born, date(2025, 3, 1)) == "8-28d"
    assert band_on(born, date(2025, 3, 2)) == "1-3m"


@pytest.mark.parametrize(
    ("day", "months", "band"),
    [
        (date(2025, 2, 28), 11, "3-12m"),  # 2025 has no 29 February: not yet one year old
        (date(2025, 3, 1), 12, "1-2y"),  # the day after 28 February
        (date(2026, 2, 28), 23, "1-2y"),
        (date(2026, 3, 1), 24, "2-6y"),
        (date(2028, 2, 29), 48, "2-6y"),  # a leap year: the birthday itself
        (date(2042, 2, 28), 18 * 12 - 1, "12-18y"),
        (date(2042, 3, 1), 18 * 12, "adult"),
    ],
)
def test_a_29_february_birthday(day: date, months: int, band: str) -> None:
    born = date(2024, 2, 29)
    assert completed_months(born, day) == months
    assert band_on(born, day) == band


def test_a_month_end_birthday_reaches_a_shorter_month_on_the_day_after() -> None:
    born = date(2024, 1, 31)
    assert completed_months(born, date(2024, 4, 30)) == 2  # April has no 31st
    assert band_on(born, date(2024, 4, 30)) == "1-3m"
    assert completed_months(born, date(2024, 5, 1)) == 3
    assert band_on(born, date(2024, 5, 1)) == "3-12m"


def test_dates_read_as_local_calendar_days() -> None:
    assert date_span("2025-03-01T00:30:00+01:00") == (date(2025, 3, 1), date(2025, 3, 1))
    assert date_span("2024-02") == (date(2024, 2, 1), date(2024, 2, 29))
    assert date_span("2024") == (date(2024, 1, 1), date(2024, 12, 31))
    assert date_span("2025-02-30") is None
    assert date_span("garbage") is None
    young, old = age_span("2024", "2025-06-01") or (None, None)
    assert young == age_on(date(2024, 12, 31), date(2025, 6, 1))
    assert old == age_on(date(2024, 1, 1), date(2025, 6, 1))


# --- through the pipeline: the collection date as the laboratory wrote it ----------------


def test_a_birthday_in_the_laboratory_time_zone_not_in_utc() -> None:
    # born 29 Feb 2024; collected 00:30 on 1 March 2025 in +01:00 (23:30 on 28 February in
    # UTC): one year old on the local date, so 1-2 years, ANC limit 1.5
    local_birthday = oru(birth="20240229", collected="20250301003000+0100", counts={ANC: "1.2"})
    evaluation = evaluation_of(local_birthday, CONTEXT)
    assert evaluation.profile.endswith("age band 1-2 years")
    assert "neutropenia" in {f.rule_id for f in evaluation.findings}
    # 23:30 on 28 February in -05:00 (04:30 on 1 March in UTC): still 11 months, limit 1.0
    day_before = oru(birth="20240229", collected="20250228233000-0500", counts={ANC: "1.2"})
    evaluation = evaluation_of(day_before, CONTEXT)
    assert evaluation.profile.endswith("age band 3-12 months")
    assert "neutropenia" not in {f.rule_id for f in evaluation.findings}


@pytest.mark.parametrize(("before", "on", "younger", "older"), EDGES, ids=[e[3] for e in EDGES])
def test_every_band_edge_through_the_pipeline(
    before: date, on: date, younger: str, older: str
) -> None:
    """The band named in the conclusion's profile line, each side of every edge."""
    names = {band.id: band.name for band in PROFILE.bands}
    for day, band in ((before, younger), (on, older)):
        collected = f"{day:%Y%m%d}080000+0000"
        data = oru(birth=f"{BORN:%Y%m%d}", collected=collected, counts={WBC: "7.0", ALC: "3.5"})
        profile = evaluation_of(data, CONTEXT).profile
        if band == "adult":
            assert "age band" not in profile
        else:
            assert profile.endswith(f"age band {names[band]}")


def test_one_to_three_months_starts_at_one_completed_month() -> None:
    # born 15 January: day 29 is 13 February, one month only on 15 February
    assert band_on(BORN, BORN + timedelta(days=29)) == "8-28d"
    assert band_on(BORN, BORN + timedelta(days=30)) == "8-28d"
    assert band_on(BORN, date(2024, 2, 15)) == "1-3m"
    # born 31 January 2025: one month on 1 March (day 29)
    assert band_on(date(2025, 1, 31), date(2025, 2, 28)) == "8-28d"
    assert band_on(date(2025, 1, 31), date(2025, 3, 1)) == "1-3m"

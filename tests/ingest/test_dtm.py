import pytest

from leukofhir.ingest.dtm import DtmError, to_fhir_date, to_fhir_datetime


@pytest.mark.parametrize(
    ("dtm", "expected"),
    [
        ("2026", "2026"),
        ("202603", "2026-03"),
        ("20260314", "2026-03-14"),
        ("2026031409", "2026-03-14"),  # an hour alone: cut to the date, never invent minutes
        ("202603140930", "2026-03-14T09:30:00+00:00"),
        ("20260314093015", "2026-03-14T09:30:15+00:00"),
        ("20260314093015.1234", "2026-03-14T09:30:15.1234+00:00"),
        ("20260314093015-0500", "2026-03-14T09:30:15-05:00"),
        ("202603140930+0130", "2026-03-14T09:30:00+01:30"),
        ("", ""),
    ],
)
def test_datetime_keeps_the_precision_sent(dtm: str, expected: str) -> None:
    assert to_fhir_datetime(dtm, "UTC") == expected


def test_default_zone_gives_the_offset_of_that_date() -> None:
    assert to_fhir_datetime("20260115120000", "Europe/Zurich").endswith("+01:00")
    assert to_fhir_datetime("20260715120000", "Europe/Zurich").endswith("+02:00")


@pytest.mark.parametrize(
    "bad",
    [
        "DATE!",
        "20261301",
        "20260230",
        "2026031425",
        "20260314093099",
        "20260314093015+2500",
        "2026-03-14",
    ],
)
def test_malformed_values_raise(bad: str) -> None:
    with pytest.raises(DtmError):
        to_fhir_datetime(bad, "UTC")


def test_date() -> None:
    assert to_fhir_date("19700101") == "1970-01-01"
    assert to_fhir_date("1970") == "1970"
    with pytest.raises(DtmError):
        to_fhir_date("19701301")

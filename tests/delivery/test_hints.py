"""Retry-After and the rate-limit headers, every form we read."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from leukofhir.delivery.hints import rate_limit_wait, retry_after, server_delay

NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("0", 0.0),
        ("120", 120.0),
        (" 5 ", 5.0),
        ("Sun, 01 Mar 2026 12:00:30 GMT", 30.0),  # IMF-fixdate
        ("Sunday, 01-Mar-26 12:01:00 GMT", 60.0),  # obsolete RFC 850
        ("Sun Mar  1 12:00:10 2026", 10.0),  # asctime, GMT
        ("Sun, 01 Mar 2026 11:00:00 GMT", 0.0),  # in the past: now
    ],
)
def test_retry_after(value: str, seconds: float) -> None:
    assert retry_after(value, NOW) == seconds


@pytest.mark.parametrize("value", ["", "soon", "-5", "1.5", "Mon, 99 Foo 2026"])
def test_unreadable_retry_after_is_ignored(value: str) -> None:
    assert retry_after(value, NOW) is None


@pytest.mark.parametrize(
    ("headers", "throttled", "seconds"),
    [
        ({"RateLimit": '"default";r=0;t=30'}, False, 30.0),  # draft 08+
        ({"RateLimit": '"default";r=5;t=30'}, False, None),  # quota left
        ({"RateLimit": '"default";r=5;t=30'}, True, 30.0),  # but a 429 says otherwise
        ({"RateLimit": '"burst";r=0;t=2, "daily";r=0;t=3600'}, False, 3600.0),
        ({"RateLimit": '"burst";r=1;t=2, "daily";r=0;t=3600'}, False, 3600.0),
        ({"RateLimit": "limit=10, remaining=0, reset=7"}, False, 7.0),  # draft 07
        ({"RateLimit-Remaining": "0", "RateLimit-Reset": "12"}, False, 12.0),  # drafts <= 06
        ({"ratelimit-remaining": "3", "ratelimit-reset": "12"}, False, None),
        ({"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "9"}, False, 9.0),
        ({"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(int(NOW) + 45)}, False, 45.0),
        ({"X-RateLimit-Reset": str(int(NOW) - 45)}, True, 0.0),  # past epoch: now
        ({"RateLimit": "garbage;;=,"}, True, None),
        ({}, True, None),
    ],
)
def test_rate_limit_wait(headers: dict[str, str], throttled: bool, seconds: float | None) -> None:
    assert rate_limit_wait(headers, NOW, throttled=throttled) == seconds


def test_server_delay_prefers_retry_after() -> None:
    headers = {"Retry-After": "3", "RateLimit": '"q";r=0;t=60'}
    assert server_delay(503, headers, NOW) == 3.0
    assert server_delay(429, {"RateLimit": '"q";r=9;t=60'}, NOW) == 60.0
    assert server_delay(503, {"RateLimit": '"q";r=9;t=60'}, NOW) is None
    assert server_delay(503, {"Retry-After": "later", "RateLimit": '"q";r=0;t=8'}, NOW) == 8.0

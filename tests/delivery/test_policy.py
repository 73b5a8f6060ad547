"""The retry policy: classification table and the backoff's bounds, as properties."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from leukofhir.delivery.policy import (
    RetryPolicy,
    Verdict,
    backoff,
    backoff_ceiling,
    classify,
    next_attempt,
    retry_delay,
)

policies = st.builds(
    RetryPolicy,
    base=st.floats(0.001, 10),
    cap=st.floats(10, 3600),
    retry_for=st.floats(0, 10**6),
)
draws = st.floats(0, 1, exclude_max=True)
retries = st.integers(0, 10_000)


@pytest.mark.parametrize(
    ("status", "verdict"),
    [
        *[(s, Verdict.RETRY) for s in (408, 425, 429, 500, 502, 503, 504)],
        *[(s, Verdict.DEAD) for s in (400, 404, 409, 412, 422, 405, 410, 413, 415, 501, 505)],
        *[(s, Verdict.DEAD) for s in (301, 302, 304, 307)],
        (401, Verdict.STOP),
        (403, Verdict.STOP),
        (200, Verdict.DELIVERED),
        (201, Verdict.DELIVERED),
    ],
)
def test_classify(status: int, verdict: Verdict) -> None:
    assert classify(status) is verdict


def test_defaults_are_the_issues() -> None:
    policy = RetryPolicy()
    assert (policy.base, policy.cap, policy.retry_for) == (0.5, 60.0, 86400.0)
    assert [backoff_ceiling(policy, n) for n in range(9)] == [
        0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0
    ]  # fmt: skip


@pytest.mark.parametrize("bad", [{"base": 0}, {"base": 2, "cap": 1}, {"retry_for": -1}])
def test_policy_refuses_nonsense(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="RetryPolicy"):
        RetryPolicy(**bad)


@given(policies, retries, draws)
def test_backoff_within_full_jitter_bounds(policy: RetryPolicy, retry: int, draw: float) -> None:
    delay = backoff(policy, retry, lambda: draw)
    assert 0.0 <= delay <= min(policy.cap, policy.base * 2.0 ** min(retry, 64))


@given(policies, retries)
def test_ceiling_is_monotone_and_capped(policy: RetryPolicy, retry: int) -> None:
    assert backoff_ceiling(policy, retry) <= backoff_ceiling(policy, retry + 1) <= policy.cap


@given(policies, retries)
def test_full_jitter_spans_the_whole_range(policy: RetryPolicy, retry: int) -> None:
    assert backoff(policy, retry, lambda: 0.0) == 0.0
    assert backoff(policy, retry, lambda: 1.0) == backoff_ceiling(policy, retry)


@given(policies, retries, draws, st.floats(0, 10**5))
def test_server_hint_raises_the_wait_never_lowers_it(
    policy: RetryPolicy, retry: int, draw: float, hint: float
) -> None:
    plain = retry_delay(policy, retry, lambda: draw, None)
    hinted = retry_delay(policy, retry, lambda: draw, hint)
    assert hinted == max(plain, hint) >= 0.0


@given(policies, retries, draws, st.floats(0, 10**6), st.floats(0, 10**6))
def test_next_attempt_gives_up_after_retry_for(
    policy: RetryPolicy, retry: int, draw: float, first: float, elapsed: float
) -> None:
    now = first + elapsed
    when = next_attempt(policy, retry=retry, first_attempt=first, now=now, random=lambda: draw)
    delay = backoff(policy, retry, lambda: draw)
    if now + delay > first + policy.retry_for:
        assert when is None
    else:
        assert when == now + delay >= now


def test_a_hint_beyond_retry_for_gives_up() -> None:
    policy = RetryPolicy(retry_for=100)
    assert next_attempt(policy, retry=0, first_attempt=0, now=50, random=lambda: 0, hint=60) is None
    assert next_attempt(policy, retry=0, first_attempt=0, now=50, random=lambda: 0, hint=40) == 90

"""What an answer means and when to try again: pure functions, the clock and the random
source passed in.

Classification of an answer to a transaction (RFC 9110 status codes; FHIR R4 http.html)::

    no answer (connection refused or reset, timeout)      retry
    408 425 429 500 502 503 504                           retry
    401 403                                               stop: every request would fail alike
    2xx with a valid transaction-response                 delivered
    anything else (400 404 409 412 422, other 4xx/5xx,    dead: the same request gets the
    3xx, a 2xx that is no valid transaction-response)     same answer; kept as a dead letter

Backoff is exponential with *full jitter* (the n-th retry, counted from 0, waits a uniform
draw from ``[0, min(cap, base * 2**n)]``), so that many clients failing together do not
come back together.  A server's own hint (``Retry-After``, ``RateLimit``: see
:mod:`.hints`) raises the wait to at least what it asks.  A document whose next attempt
would fall later than ``retry_for`` after its first attempt is given up: a dead letter.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

__all__ = [
    "RETRY_STATUSES",
    "STOP_STATUSES",
    "RetryPolicy",
    "Verdict",
    "backoff",
    "backoff_ceiling",
    "classify",
    "next_attempt",
    "retry_delay",
]

RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
STOP_STATUSES = frozenset({401, 403})

_MAX_EXPONENT = 64  # 2**64 * any sane base is far beyond any cap


class Verdict(StrEnum):
    DELIVERED = "delivered"
    RETRY = "retry"
    DEAD = "dead"
    STOP = "stop"


def classify(status: int) -> Verdict:
    """The verdict of an HTTP status alone (a 2xx still needs its body checked)."""
    if 200 <= status < 300:
        return Verdict.DELIVERED
    if status in RETRY_STATUSES:
        return Verdict.RETRY
    if status in STOP_STATUSES:
        return Verdict.STOP
    return Verdict.DEAD


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    base: float = 0.5  # seconds: the ceiling of the first retry's wait
    cap: float = 60.0  # seconds: no wait of ours is longer (a server's hint may be)
    retry_for: float = 24 * 3600.0  # seconds after the first attempt: then a dead letter

    def __post_init__(self) -> None:
        if not 0 < self.base <= self.cap:
            raise ValueError("RetryPolicy needs 0 < base <= cap")
        if self.retry_for < 0:
            raise ValueError("RetryPolicy.retry_for must not be negative")


def backoff_ceiling(policy: RetryPolicy, retry: int) -> float:
    """``min(cap, base * 2**retry)``: the longest wait before retry number ``retry`` (from 0)."""
    exponent = min(max(retry, 0), _MAX_EXPONENT)
    return min(policy.cap, policy.base * 2.0**exponent)


def backoff(policy: RetryPolicy, retry: int, random: Callable[[], float]) -> float:
    """Full jitter: a uniform draw from ``[0, backoff_ceiling]``; ``random()`` is in [0, 1)."""
    return max(0.0, min(1.0, random())) * backoff_ceiling(policy, retry)


def retry_delay(
    policy: RetryPolicy, retry: int, random: Callable[[], float], hint: float | None
) -> float:
    """The wait before retry number ``retry``: the jittered backoff, raised to the server's
    hint (seconds) when it asks for more."""
    delay = backoff(policy, retry, random)
    return delay if hint is None else max(delay, hint)


def next_attempt(
    policy: RetryPolicy,
    *,
    retry: int,
    first_attempt: float,
    now: float,
    random: Callable[[], float],
    hint: float | None = None,
) -> float | None:
    """When to try again (a time on the clock of ``now``), or None: give up, because that
    would be later than ``retry_for`` after ``first_attempt``."""
    when = now + retry_delay(policy, retry, random, hint)
    return None if when > first_attempt + policy.retry_for else when

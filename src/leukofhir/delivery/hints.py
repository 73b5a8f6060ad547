"""How long a server asks us to wait, from its answer's headers (pure; ``now`` passed in,
in seconds since the epoch).

* ``Retry-After`` (RFC 9110 §10.2.3): delay-seconds or an HTTP-date (IMF-fixdate, the
  obsolete RFC 850 and asctime forms; a date without zone is GMT).
* ``RateLimit`` (draft-ietf-httpapi-ratelimit-headers-08 and later): a list of quota
  items with parameters ``r`` (remaining) and ``t`` (seconds until the quota resets), e.g.
  ``"default";r=0;t=30``; the dictionary form of draft 07 (``limit=10, remaining=0,
  reset=30``) is read too.
* ``RateLimit-Remaining`` / ``RateLimit-Reset`` (drafts 00-06: delta-seconds) and the
  common ``X-RateLimit-Remaining`` / ``X-RateLimit-Reset`` (delta-seconds, or epoch seconds
  when the number is a plausible time: GitHub's form).

A rate limit asks for a wait when its quota is used up (remaining 0), or on a 429 (the
server says so itself).  Anything unreadable is ignored: a hint never makes an answer fail.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import UTC
from email.utils import parsedate_to_datetime

__all__ = ["rate_limit_wait", "retry_after", "server_delay"]

_DIGITS = re.compile(r"[0-9]+")
_NUMBER = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")
_EPOCH_FROM = 1_000_000_000  # X-RateLimit-Reset above this is a Unix time (after 2001)


def retry_after(value: str, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (never negative), or None."""
    text = value.strip()
    if _DIGITS.fullmatch(text):
        return float(int(text))
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)


def rate_limit_wait(headers: Mapping[str, str], now: float, *, throttled: bool) -> float | None:
    """Seconds until a used-up quota resets (the longest of them), or None.  With
    ``throttled`` (a 429) any announced reset counts, used up or not."""
    fields = _lower(headers)
    waits: list[float] = []
    for remaining, reset in _quotas(fields, now):
        if reset is not None and (throttled or remaining == 0):
            waits.append(max(0.0, reset))
    return max(waits) if waits else None


def server_delay(status: int, headers: Mapping[str, str], now: float) -> float | None:
    """What the server asks for on an answer to retry: ``Retry-After`` first, else the
    rate-limit headers."""
    fields = _lower(headers)
    if "retry-after" in fields:
        delay = retry_after(fields["retry-after"], now)
        if delay is not None:
            return delay
    return rate_limit_wait(fields, now, throttled=status == 429)


def _lower(headers: Mapping[str, str]) -> dict[str, str]:
    return {name.lower(): value for name, value in headers.items()}


def _quotas(fields: Mapping[str, str], now: float) -> Iterable[tuple[float | None, float | None]]:
    """(remaining, seconds to reset) of every quota the headers announce."""
    if "ratelimit" in fields:
        yield from _structured(fields["ratelimit"])
    if "ratelimit-reset" in fields:
        yield _number(fields.get("ratelimit-remaining")), _number(fields["ratelimit-reset"])
    if "x-ratelimit-reset" in fields:
        reset = _number(fields["x-ratelimit-reset"])
        if reset is not None and reset > _EPOCH_FROM:
            reset -= now
        yield _number(fields.get("x-ratelimit-remaining")), reset


def _structured(value: str) -> Iterable[tuple[float | None, float | None]]:
    """``"q";r=0;t=30, "d";r=5;t=60`` (list of items) or ``limit=1, remaining=0, reset=3``
    (draft 07's dictionary)."""
    members = [member.strip() for member in value.split(",") if member.strip()]
    pairs = dict(_key_value(member.split(";")[0]) for member in members)
    if "reset" in pairs:
        yield _number(pairs.get("remaining")), _number(pairs["reset"])
        return
    for member in members:
        parameters = dict(_key_value(part) for part in member.split(";")[1:])
        yield _number(parameters.get("r")), _number(parameters.get("t"))


def _key_value(text: str) -> tuple[str, str]:
    key, _, value = text.partition("=")
    return key.strip().lower(), value.strip()


def _number(text: str | None) -> float | None:
    if text is None or not _NUMBER.fullmatch(text.strip()):
        return None
    return float(text)

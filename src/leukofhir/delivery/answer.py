"""One answer of a FHIR server to one transaction, read into an :class:`Answer` (pure).

A transaction is delivered only when the HTTP status is 2xx **and** the body is a
``transaction-response`` Bundle with exactly one entry per request entry, each with a 2xx
``entry.response.status`` (FHIR R4 http.html#transaction-response).  Anything else is a
failure with its verdict (:func:`leukofhir.delivery.policy.classify`), a reason and, when
the server sent one, its OperationOutcome (kept for the dead letter).

``reason`` is written to logs: it holds our words, the HTTP status and the OperationOutcome's
issue codes, never the server's diagnostics (which may quote patient data); those stay in
``outcome``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import orjson

from leukofhir.delivery.hints import rate_limit_wait, server_delay
from leukofhir.delivery.policy import Verdict, classify

__all__ = ["Answer", "no_answer", "read_answer"]

_OUTCOME_MAX = 1 << 20  # bytes of a server's OperationOutcome kept for a dead letter


@dataclass(frozen=True, slots=True)
class Answer:
    verdict: Verdict
    status: int | None  # HTTP status; None when there was no answer
    reason: str  # for people and logs; no patient data
    delay: float | None = None  # seconds the server asks us to wait (Retry-After, RateLimit)
    outcome: bytes | None = None  # the server's OperationOutcome (JSON), as sent
    locations: tuple[str | None, ...] = ()  # delivered: entry.response.location per entry


def no_answer(reason: str) -> Answer:
    """The request got no HTTP answer (refused, reset, timed out): worth a retry."""
    return Answer(Verdict.RETRY, None, reason)


def read_answer(
    status: int, headers: Mapping[str, str], body: bytes, entries: int, now: float
) -> Answer:
    """The answer to a transaction of ``entries`` request entries."""
    verdict = classify(status)
    if verdict is not Verdict.DELIVERED:
        outcome = _operation_outcome(body)
        delay = server_delay(status, headers, now) if verdict is Verdict.RETRY else None
        return Answer(verdict, status, f"HTTP {status}{_codes(outcome)}", delay, outcome)
    try:
        bundle = orjson.loads(body)
    except orjson.JSONDecodeError:
        return Answer(Verdict.DEAD, status, f"HTTP {status} with a body that is not JSON")
    answer = _transaction_response(status, bundle, entries)
    if answer.verdict is Verdict.DELIVERED:  # a quota used up: wait before the next request
        return replace(answer, delay=rate_limit_wait(headers, now, throttled=False))
    return answer


def _transaction_response(status: int, bundle: Any, entries: int) -> Answer:
    if not (
        isinstance(bundle, dict)
        and bundle.get("resourceType") == "Bundle"
        and bundle.get("type") == "transaction-response"
    ):
        return Answer(Verdict.DEAD, status, f"HTTP {status} without a transaction-response")
    answered = bundle.get("entry") or []
    if not isinstance(answered, list) or len(answered) != entries:
        count = len(answered) if isinstance(answered, list) else 0
        return Answer(
            Verdict.DEAD,
            status,
            f"transaction-response has {count} entries for {entries} request entries",
        )
    locations: list[str | None] = []
    for index, entry in enumerate(answered):
        response = entry.get("response") if isinstance(entry, dict) else None
        if not isinstance(response, dict):
            return Answer(Verdict.DEAD, status, f"transaction-response entry {index} no response")
        code = _status_code(response.get("status"))
        if code is None or not 200 <= code < 300:
            outcome = response.get("outcome")
            kept = orjson.dumps(outcome) if _is_outcome(outcome) else None
            return Answer(
                Verdict.DEAD,
                status,
                f"transaction-response entry {index} status {response.get('status')!s:.20}"
                f"{_codes(kept)}",
                outcome=kept,
            )
        location = response.get("location")
        locations.append(location if isinstance(location, str) and location else None)
    return Answer(Verdict.DELIVERED, status, f"HTTP {status}", locations=tuple(locations))


def _status_code(value: object) -> int | None:
    """``"201"``, ``"201 Created"`` → 201."""
    if not isinstance(value, str) or len(value) < 3 or not value[:3].isdigit():
        return None
    return int(value[:3])


def _operation_outcome(body: bytes) -> bytes | None:
    if not body or len(body) > _OUTCOME_MAX:
        return None
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return body if _is_outcome(parsed) else None


def _is_outcome(value: object) -> bool:
    return isinstance(value, dict) and value.get("resourceType") == "OperationOutcome"


def _codes(outcome: bytes | None) -> str:
    """``" (error invalid, warning informational)"``: the issues' severity and code only."""
    if outcome is None:
        return ""
    issues = orjson.loads(outcome).get("issue")
    if not isinstance(issues, list):
        return ""
    words = [
        f"{issue.get('severity', '?')} {issue.get('code', '?')}"
        for issue in issues[:5]
        if isinstance(issue, dict)
    ]
    more = f", +{len(issues) - 5}" if len(issues) > 5 else ""
    return f" ({', '.join(str(word)[:40] for word in words)}{more})" if words else ""

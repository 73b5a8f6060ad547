"""Reading a server's answer to a transaction: only a full, all-2xx transaction-response is
a delivery."""

from __future__ import annotations

import orjson
import pytest

from leukofhir.delivery.answer import read_answer
from leukofhir.delivery.policy import Verdict

OUTCOME = {
    "resourceType": "OperationOutcome",
    "issue": [{"severity": "error", "code": "invalid", "diagnostics": "Patient Jane Roe 1961"}],
}


def response(*statuses: str, **extra: object) -> bytes:
    entries = [
        {"response": {"status": s, "location": f"Patient/{n}"}} for n, s in enumerate(statuses)
    ]
    return orjson.dumps(
        {"resourceType": "Bundle", "type": "transaction-response", "entry": entries, **extra}
    )


def test_delivered_with_locations() -> None:
    answer = read_answer(200, {}, response("201 Created", "200 OK"), 2, 0.0)
    assert answer.verdict is Verdict.DELIVERED
    assert answer.locations == ("Patient/0", "Patient/1")
    assert answer.delay is None


def test_delivered_with_a_used_up_quota_asks_for_a_pause() -> None:
    answer = read_answer(200, {"RateLimit": '"q";r=0;t=4'}, response("201"), 1, 0.0)
    assert (answer.verdict, answer.delay) == (Verdict.DELIVERED, 4.0)


@pytest.mark.parametrize(
    ("body", "entries", "reason"),
    [
        (response("201"), 2, "has 1 entries for 2 request entries"),
        (response("201", "201", "201"), 2, "has 3 entries for 2"),
        (response("201", "400 Bad Request"), 2, "entry 1 status 400"),
        (response("201", "abc"), 2, "entry 1 status abc"),
        (orjson.dumps({"resourceType": "Bundle", "type": "batch-response"}), 1, "without a"),
        (orjson.dumps(OUTCOME), 1, "without a transaction-response"),
        (b"<html>ok</html>", 1, "not JSON"),
        (
            orjson.dumps({"resourceType": "Bundle", "type": "transaction-response", "entry": [{}]}),
            1,
            "no response",
        ),
    ],
)
def test_a_2xx_that_is_no_complete_transaction_response_is_dead(
    body: bytes, entries: int, reason: str
) -> None:
    answer = read_answer(200, {}, body, entries, 0.0)
    assert answer.verdict is Verdict.DEAD
    assert reason in answer.reason


def test_failed_entry_keeps_its_outcome() -> None:
    body = orjson.dumps(
        {
            "resourceType": "Bundle",
            "type": "transaction-response",
            "entry": [{"response": {"status": "422", "outcome": OUTCOME}}],
        }
    )
    answer = read_answer(200, {}, body, 1, 0.0)
    assert answer.verdict is Verdict.DEAD
    assert answer.outcome is not None
    assert orjson.loads(answer.outcome) == OUTCOME


def test_4xx_keeps_the_operation_outcome_and_logs_only_codes() -> None:
    answer = read_answer(400, {}, orjson.dumps(OUTCOME), 3, 0.0)
    assert answer.verdict is Verdict.DEAD
    assert answer.outcome == orjson.dumps(OUTCOME)
    assert answer.reason == "HTTP 400 (error invalid)"
    assert "Jane" not in answer.reason  # the server's diagnostics may quote patient data


def test_retry_answers_carry_the_servers_wait() -> None:
    answer = read_answer(503, {"Retry-After": "1"}, b"", 3, 0.0)
    assert (answer.verdict, answer.delay, answer.outcome) == (Verdict.RETRY, 1.0, None)
    assert read_answer(500, {}, b"oops", 1, 0.0).delay is None


def test_stop_and_dead_answers_take_no_wait() -> None:
    assert read_answer(401, {"Retry-After": "9"}, b"", 1, 0.0).verdict is Verdict.STOP
    assert read_answer(400, {"Retry-After": "9"}, b"", 1, 0.0).delay is None

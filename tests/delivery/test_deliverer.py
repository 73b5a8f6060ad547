"""The delivery loop's own rules, with the server's answers scripted at the transport (no
server needed): giving up after ``retry_for``, a used-up rate limit pausing every request,
the service mode (documents queued while it runs, clean shutdown), ``deliver_now``."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import orjson

from leukofhir.delivery import (
    Deliverer,
    Document,
    FhirServer,
    RetryPolicy,
    RunSummary,
    SqliteOutbox,
    TransactionClient,
    Verdict,
    deliver_now,
)
from tests.delivery.helpers import DOCS, FAST, documents

BASE = "http://127.0.0.1:9/fhir"  # never reached: the transport answers


def answering(
    status: Callable[[int], int], headers: dict[str, str] | None = None
) -> httpx.MockTransport:
    """A transport answering request number n (from 0) with ``status(n)``: a complete
    transaction-response when 200."""
    count = 0

    def handle(request: httpx.Request) -> httpx.Response:
        nonlocal count
        code = status(count)
        count += 1
        if code != 200:
            return httpx.Response(code, headers={"Retry-After": "0"})
        entries = [{"response": {"status": "201"}} for _ in orjson.loads(request.content)["entry"]]
        body = {"resourceType": "Bundle", "type": "transaction-response", "entry": entries}
        return httpx.Response(200, json=body, headers=headers or {})

    return httpx.MockTransport(handle)


def run(outbox: SqliteOutbox, transport: httpx.MockTransport, **options: object) -> RunSummary:
    async def main() -> RunSummary:
        async with TransactionClient(FhirServer(BASE), transport=transport) as client:
            return await Deliverer(outbox, client.post, **options).run()  # type: ignore[arg-type]

    return asyncio.run(asyncio.wait_for(main(), 30))


def test_retries_end_in_a_dead_letter_after_retry_for(tmp_path: Path) -> None:
    outbox = SqliteOutbox.open(tmp_path / "o.sqlite", dead_letters=tmp_path / "dead")
    outbox.enqueue(documents(DOCS[:1]), time.time())
    policy = RetryPolicy(base=0.02, cap=0.05, retry_for=0.3)
    run(outbox, answering(lambda n: 503), policy=policy)
    (letter,) = outbox.dead_letters()
    assert letter.status == 503
    assert letter.reason.startswith("gave up after")
    assert "HTTP 503" in letter.reason
    assert letter.attempts >= 3
    outcome = next((tmp_path / "dead").glob("*.outcome.json")).read_bytes()
    assert orjson.loads(outcome)["issue"][0]["diagnostics"] == letter.reason


def test_a_used_up_rate_limit_pauses_every_request(tmp_path: Path) -> None:
    outbox = SqliteOutbox.open(tmp_path / "o.sqlite")
    outbox.enqueue(documents(DOCS[:3]), time.time())
    started: list[float] = []
    inner = answering(lambda n: 200, {"RateLimit": '"default";r=0;t=0.4'})

    async def handle(request: httpx.Request) -> httpx.Response:
        started.append(time.monotonic())
        return await inner.handle_async_request(request)

    run(outbox, httpx.MockTransport(handle), concurrency=1)
    gaps = [b - a for a, b in itertools.pairwise(started)]
    assert len(started) == 3
    assert all(gap >= 0.35 for gap in gaps), gaps


def test_service_mode_takes_new_documents_and_stops_cleanly(tmp_path: Path) -> None:
    outbox = SqliteOutbox.open(tmp_path / "o.sqlite")
    docs = documents(DOCS[:4])

    async def main() -> tuple[int, int]:
        async with TransactionClient(
            FhirServer(BASE), transport=answering(lambda n: 200)
        ) as client:
            deliverer = Deliverer(outbox, client.post, policy=FAST, poll=30.0)
            running = asyncio.create_task(deliverer.run(until_idle=False))
            await asyncio.sleep(0.2)
            assert not running.done()  # nothing to do, but it waits for more
            outbox.enqueue(docs[:2], time.time())
            deliverer.wake()
            while outbox.counts(time.time()).delivered < 2:
                await asyncio.sleep(0.01)
            outbox.enqueue(docs[2:], time.time())
            deliverer.wake()
            while outbox.counts(time.time()).delivered < 4:
                await asyncio.sleep(0.01)
            deliverer.stop()
            summary = await asyncio.wait_for(running, 5)
            return summary.delivered, summary.attempts

    assert asyncio.run(asyncio.wait_for(main(), 30)) == (4, 4)


def test_shutdown_cancels_what_outlives_the_grace_and_keeps_it_pending(tmp_path: Path) -> None:
    outbox = SqliteOutbox.open(tmp_path / "o.sqlite")
    outbox.enqueue([Document("slow", "P", 1, DOCS[0])], time.time())

    async def never(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(60)
        raise AssertionError("not reached")

    async def main() -> float:
        async with TransactionClient(
            FhirServer(BASE), transport=httpx.MockTransport(never)
        ) as client:
            deliverer = Deliverer(outbox, client.post)
            running = asyncio.create_task(deliverer.run(until_idle=False, grace=0.2))
            await asyncio.sleep(0.2)
            began = time.monotonic()
            deliverer.stop()
            await asyncio.wait_for(running, 5)
            return time.monotonic() - began

    assert asyncio.run(main()) < 2.0
    record = outbox.record("slow")
    assert record is not None
    assert (record.state, record.attempts) == ("pending", 0)


def test_deliver_now_retries_then_delivers_or_gives_up() -> None:
    async def attempt(transport: httpx.MockTransport, policy: RetryPolicy) -> tuple[Verdict, str]:
        async with TransactionClient(FhirServer(BASE), transport=transport) as client:
            result = await deliver_now(client.post, DOCS[0], policy=policy)
            return result.answer.verdict, result.answer.reason

    assert asyncio.run(attempt(answering(lambda n: 503 if n < 2 else 200), FAST)) == (
        Verdict.DELIVERED,
        "HTTP 200",
    )
    verdict, reason = asyncio.run(
        attempt(answering(lambda n: 502), RetryPolicy(base=0.01, cap=0.02, retry_for=0.1))
    )
    assert verdict is Verdict.DEAD
    assert reason.startswith("gave up after")
    assert asyncio.run(attempt(answering(lambda n: 403), FAST))[0] is Verdict.STOP


def test_a_stopped_deliverer_runs_again_once_the_cause_is_fixed(tmp_path: Path) -> None:
    outbox = SqliteOutbox.open(tmp_path / "o.sqlite")
    outbox.enqueue(documents(DOCS[:3]), time.time())
    transport = answering(lambda n: 401 if n == 0 else 200)

    async def twice() -> tuple[RunSummary, RunSummary]:
        async with TransactionClient(FhirServer(BASE), transport=transport) as client:
            deliverer = Deliverer(outbox, client.post, concurrency=1)
            return await deliverer.run(), await deliverer.run()

    first, second = asyncio.run(twice())
    assert first.stopped is not None
    assert first.attempts == 1
    assert second.stopped is None
    assert second.delivered == 3

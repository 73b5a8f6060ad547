"""Faults a real server shows: injected 503s with Retry-After, answers slower than the
client waits (the write happened, the client saw none), a server not started yet.  Each
time, at the end, the server holds what the plain route gives: nothing lost, nothing twice,
the Provenance included (it is written on a condition naming its document)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from leukofhir.delivery import Deliverer, DeliveryStats, FhirServer, RetryPolicy, TransactionClient
from leukofhir.delivery.stats import Attempted
from tests.delivery.conftest import Oracle
from tests.delivery.helpers import DOCS, FAST, deliver, documents, fresh_outbox
from tests.fhirserver import FhirServer as ServerProcess
from tests.fhirserver import canonical, free_port, require_server, running_server


def test_injected_503s_are_retried_until_everything_is_in_once(
    tmp_path: Path, oracle: Oracle
) -> None:
    docs = DOCS[:8]  # each fault pauses all sending for its Retry-After: 1 s
    with running_server(tmp_path / "srv", "--fail-rate", "0.3", "--seed", "7") as server:
        outbox = fresh_outbox(tmp_path, docs)
        stats = DeliveryStats()
        started = time.monotonic()
        summary = deliver(outbox, server.base, stats=stats)
        elapsed = time.monotonic() - started
        state = canonical(server.dump())
    snapshot = stats.snapshot()
    assert summary.delivered == len(docs)
    assert summary.dead == 0
    assert summary.retried == snapshot.by_status["503"] >= 1  # the faults did happen
    assert elapsed >= 1.0  # and their Retry-After: 1 was honoured
    # An injected failure applies nothing; a retry adds nothing.
    assert state == oracle(docs)


def test_answers_later_than_the_client_waits(tmp_path: Path, oracle: Oracle) -> None:
    """The server applies each write, then answers after 700 ms; the client gives up after
    250 ms and retries.  A patient client (5 s) then finds every write made: the retries
    change nothing, and no Provenance is added by an attempt applied twice or more."""
    docs = DOCS[:6]
    expected = oracle(docs)
    with running_server(tmp_path / "srv", "--delay-ms", "700") as server:
        outbox = fresh_outbox(tmp_path, docs)
        impatient = DeliveryStats()
        tried: set[str] = set()
        heads = len({document.patient for document in documents(docs)})

        async def until_each_was_tried() -> int:
            config = FhirServer(server.base, timeout=0.25, connections=4)
            async with TransactionClient(config, observe=impatient.observe) as client:

                def hook(event: Attempted) -> None:
                    tried.add(event.key)
                    if len(tried) == heads:  # the first document of every patient
                        deliverer.stop()

                deliverer = Deliverer(outbox, client.post, policy=FAST, hooks=[hook])
                return (await deliverer.run(grace=5.0)).delivered

        assert asyncio.run(until_each_was_tried()) == 0
        timeouts = impatient.snapshot().by_status["none"]
        assert timeouts >= heads
        assert outbox.counts(time.time()).pending == len(docs)

        assert deliver(outbox, server.base, timeout=5.0).delivered == len(docs)
        dump = server.dump()
    assert canonical(dump) == expected
    assert sum(r["resourceType"] == "Provenance" for r in dump) == len(docs)


def test_a_server_that_is_not_up_yet(tmp_path: Path, oracle: Oracle) -> None:
    require_server()
    docs = DOCS[:6]
    expected = oracle(docs)
    port = free_port()
    outbox = fresh_outbox(tmp_path, docs)
    server = ServerProcess(tmp_path / "srv", port=port)
    stats = DeliveryStats()

    async def scenario() -> int:
        config = FhirServer(f"http://127.0.0.1:{port}/fhir/R4")
        async with TransactionClient(config, observe=stats.observe) as client:
            policy = RetryPolicy(base=0.1, cap=0.5, retry_for=120)
            run = asyncio.create_task(Deliverer(outbox, client.post, policy=policy).run())
            await asyncio.sleep(1.0)
            assert not run.done()
            await asyncio.to_thread(server.start)
            return (await asyncio.wait_for(run, 60)).delivered

    try:
        delivered = asyncio.run(scenario())
        state = canonical(server.dump())
    finally:
        server.stop()
    assert delivered == len(docs)
    assert stats.snapshot().by_status["none"] >= 2  # refused connections, retried
    assert state == expected

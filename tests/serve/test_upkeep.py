"""The background upkeep of a running service: messages put back by ``journal --retry``
are processed without a restart; done messages older than the retention are pruned in
small batches, and nothing else is."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from leukofhir.context import Settings
from leukofhir.serve.header import content_hash, read_header
from leukofhir.serve.intake import Intake
from leukofhir.serve.journal import Arrival, Completion, Journal
from leukofhir.serve.sink import FolderSink
from leukofhir.serve.upkeep import keep_up, prune
from tests.serve.helpers import Poisoned, field_of, sample

M02 = sample("02-leukopenia-g1-wbc-3p0.hl7")
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def arrival(message: bytes) -> Arrival:
    header, sha256 = read_header(message), content_hash(message)
    return Arrival(header.sender, header.control_id, sha256, "hl7v2", "mllp", message)


def test_a_retried_message_is_processed_by_the_running_service(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    poisoned = Poisoned(monkeypatch)
    message = M02.replace(b"LCH000418822", b"POISON-1")

    async def scenario() -> None:
        intake = Intake(Journal(tmp_path, durable=False), FolderSink(tmp_path), Settings())
        first = await (await intake.submit(message)).reply
        assert (first.code, first.outcome) == ("AR", "failed")
        poisoned.active = False  # the fault fixed; the operator puts the message back:
        operator = Journal(tmp_path)
        [row] = operator.failed()
        assert operator.retry(row.id)
        operator.close()
        upkeep = asyncio.create_task(keep_up(intake, 0, every=0.02))
        async with asyncio.timeout(5):
            while intake.journal.counts() != {"processed": 1}:
                await asyncio.sleep(0.02)
        upkeep.cancel()
        again = await (await intake.submit(message)).reply  # the sender re-sends: stored AA
        await intake.close(1.0)
        assert (again.code, again.outcome) == ("AA", "duplicate")
        assert field_of(again.body, "MSA", 1) == "AA"

    asyncio.run(asyncio.wait_for(scenario(), 30))


def done_rows(journal: Journal, count: int, finished: datetime, start: int = 0) -> None:
    messages = [M02.replace(b"LCH000418822", f"C{start + i}".encode()) for i in range(count)]
    entries = journal.receive([arrival(m) for m in messages], "2026-01-01T00:00:00+00:00")
    completions = [Completion(e.id, "processed", "AA", b"ACK") for e in entries]
    journal.complete(completions, finished.isoformat(timespec="seconds"))


def test_retention_prunes_done_messages_in_batches_between_other_work(tmp_path: Path) -> None:
    journal = Journal(tmp_path, durable=False)
    done_rows(journal, 1_200, NOW - timedelta(days=31))
    done_rows(journal, 3, NOW - timedelta(days=29), start=5_000)
    [failed, _received] = journal.receive(
        [arrival(M02.replace(b"LCH000418822", f"X{i}".encode())) for i in range(2)],
        "2026-01-01T00:00:00+00:00",
    )
    journal.complete([Completion(failed.id, "failed", "AR", b"AR", reason="KeyError")], "2026")

    async def scenario() -> tuple[int, int]:
        turns = 0

        async def other_work() -> None:
            nonlocal turns
            while True:
                turns += 1
                await asyncio.sleep(0)

        beside = asyncio.create_task(other_work())
        await asyncio.sleep(0)
        pruned = await prune(journal, NOW - timedelta(days=30), batch=500)
        beside.cancel()
        return pruned, turns

    pruned, turns = asyncio.run(scenario())
    assert pruned == 1_200
    assert turns >= 3  # the loop ran other work between the three transactions
    assert journal.counts() == {"processed": 3, "failed": 1, "received": 1}
    journal.close()


@pytest.mark.parametrize(("retention", "left"), [(30 * 86400.0, 3), (0.0, 13)])
def test_the_upkeep_prunes_by_its_retention_and_0_keeps_everything(
    tmp_path: Path, retention: float, left: int
) -> None:
    journal = Journal(tmp_path, durable=False)
    done_rows(journal, 10, NOW - timedelta(days=31))
    done_rows(journal, 3, NOW - timedelta(days=1), start=100)
    journal.close()

    async def scenario() -> None:
        intake = Intake(Journal(tmp_path, durable=False), FolderSink(tmp_path), Settings())
        rounds = 0
        look = intake.recover

        def counted(owners: Sequence[int] | None = None) -> int:  # a round begins with it
            nonlocal rounds
            rounds += 1
            return look(owners)

        intake.recover = counted  # type: ignore[method-assign]
        upkeep = asyncio.create_task(keep_up(intake, retention, every=0.01, clock=lambda: NOW))
        async with asyncio.timeout(10):
            while rounds < 3:  # two rounds done, whole
                await asyncio.sleep(0.01)
        upkeep.cancel()
        assert intake.journal.counts() == {"processed": left}
        await intake.close(1.0)

    asyncio.run(asyncio.wait_for(scenario(), 30))

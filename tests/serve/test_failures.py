"""Faults of ours in the engine (:class:`~leukofhir.serve.intake.Intake`), injected: a
processing step or a reply builder that raises.  The message is answered (AR with ERR 207),
kept as failed with its reason, and blocks nothing: not the next message, not its
re-sends or waiters, not the recovery at start, not the shutdown."""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from leukofhir.context import Settings
from leukofhir.serve.header import content_hash, read_header
from leukofhir.serve.intake import Intake
from leukofhir.serve.journal import Arrival, Journal
from leukofhir.serve.metrics import Metrics
from leukofhir.serve.sink import FolderSink
from tests.serve.helpers import Peer, Poisoned, field_of, outputs, running, sample

M02 = sample("02-leukopenia-g1-wbc-3p0.hl7")
M03 = sample("03-leukopenia-g2-wbc-2p99.hl7")
POISON = M02.replace(field_of(M02, "MSH", 10).encode(), b"POISON-1")
PATIENT = ("003318742", "HOLLOWAY", "GERALD", "19570822", "MAPLE", "A0441879")


def run(scenario: Callable[[Path], Awaitable[None]], tmp_path: Path) -> None:
    asyncio.run(asyncio.wait_for(scenario(tmp_path), 30))


def msa(ack: bytes) -> tuple[str, str]:
    return field_of(ack, "MSA", 1), field_of(ack, "MSA", 2)


def deep(n: int) -> int:
    return deep(n + 1) + 1


def recursion_error() -> RecursionError:
    try:
        deep(0)
    except RecursionError as exc:
        return exc
    raise AssertionError("unreachable")


@pytest.mark.parametrize(
    "error",
    [KeyError("R4.FooType"), recursion_error(), MemoryError(), TypeError("unhashable")],
    ids=["KeyError", "RecursionError", "MemoryError", "TypeError"],
)
def test_a_fault_is_answered_ar_207_kept_as_failed_and_the_next_message_is_aa(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: BaseException
) -> None:
    poisoned = Poisoned(monkeypatch, error)

    async def scenario(out: Path) -> None:
        async with running(out) as service:
            peer = await Peer.open(service.port)
            await peer.send(POISON)
            [failed] = await peer.receive()
            await peer.send(M03)
            [good] = await peer.receive()
            await peer.send(POISON)  # a re-send: the stored answer, not a new attempt
            [again] = await peer.receive()
            await peer.close()
            journal = service.intake.journal
            assert journal.counts() == {"failed": 1, "processed": 1}
            [row] = journal.failed()
        kind = type(error).__name__
        assert msa(failed) == ("AR", "POISON-1")
        assert field_of(failed, "ERR", 3).startswith("207^Application internal error")
        assert f"({kind})" in field_of(failed, "ERR", 8)
        assert "kept as failed" in field_of(failed, "ERR", 8)
        assert msa(good) == ("AA", field_of(M03, "MSH", 10))
        assert again == failed
        assert poisoned.calls == 1
        assert row.reason.startswith(f"{kind} at ")
        assert ", from serve/intake.py:" in row.reason  # where: innermost frame, then ours
        assert (row.control_id, row.format, row.channel) == ("POISON-1", "hl7v2", "mllp")
        assert not [n for n in outputs(out) if "POISON" in n]  # no output for it

    run(scenario, tmp_path)


def test_a_fault_building_the_reply_fails_the_message_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import leukofhir.serve.intake as intake_module

    original = intake_module.application_ack

    def broken(message: bytes, *args: Any, **kwargs: Any) -> tuple[str, bytes]:
        if b"POISON" in message:
            raise ValueError("cannot build it")
        return original(message, *args, **kwargs)

    monkeypatch.setattr(intake_module, "application_ack", broken)

    async def scenario(out: Path) -> None:
        async with running(out) as service:
            peer = await Peer.open(service.port)
            await peer.send(POISON, M03)
            failed, good = await peer.receive(2)
            await peer.close()
            [row] = service.intake.journal.failed()
        assert msa(failed) == ("AR", "POISON-1")
        assert msa(good)[0] == "AA"
        assert row.reason.startswith("ValueError at ")

    run(scenario, tmp_path)


def intake_at(out: Path, metrics: Metrics | None = None) -> Intake:
    return Intake(Journal(out, durable=False), FolderSink(out), Settings(), metrics=metrics)


def test_waiters_of_a_failed_message_get_its_answer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    poisoned = Poisoned(monkeypatch, KeyError("x"))

    async def scenario(out: Path) -> None:
        metrics = Metrics()
        intake = intake_at(out, metrics)
        first = await intake.submit(POISON)  # no turn of the loop between the two:
        second = await intake.submit(POISON)  # the second waits for the first
        replies = await asyncio.gather(first.reply, second.reply)
        await intake.close(1.0)
        assert [r.outcome for r in replies] == ["failed", "duplicate"]
        assert replies[0].body == replies[1].body
        assert msa(replies[0].body)[0] == "AR"
        assert all(r.reason.startswith("KeyError at ") for r in replies)
        text = metrics.exposition().decode()
        assert 'leukofhir_messages_total{channel="mllp",outcome="failed"} 1.0' in text
        assert 'leukofhir_messages_total{channel="mllp",outcome="duplicate"} 1.0' in text

    run(scenario, tmp_path)
    assert poisoned.calls == 1


def stored(out: Path, *messages: bytes, owner: int = 0) -> list[int]:
    journal = Journal(out)
    arrivals = []
    for message in messages:
        header = read_header(message)
        sha256 = content_hash(message)
        arrivals.append(Arrival(header.sender, header.control_id, sha256, "hl7v2", "mllp", message))
    entries = journal.receive(arrivals, "2026-01-05T08:00:00+00:00", owner=owner)
    journal.close()
    return [e.id for e in entries]


def test_recovery_marks_a_poison_row_failed_and_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, logs: pytest.CaptureFixture[str]
) -> None:
    """Left by a crash: a poison message between two good ones.  The start recovers all
    three, the poison one as failed; the service then answers."""
    Poisoned(monkeypatch, KeyError("R4.FooType"))
    first, poison, last = stored(tmp_path, M03, POISON, M02)

    async def scenario(out: Path) -> None:
        async with running(out) as service:
            journal = service.intake.journal
            assert journal.counts() == {"processed": 2, "failed": 1}
            assert [row.id for row in journal.failed()] == [poison]
            peer = await Peer.open(service.port)
            await peer.send(POISON, M02)
            resent, good = await peer.receive(2)
            await peer.close()
        assert msa(resent) == ("AR", "POISON-1")
        assert field_of(resent, "MSH", 10) == f"LF{poison}"  # the answer made at recovery
        assert msa(good)[0] == "AA"

    run(scenario, tmp_path)
    err = logs.readouterr().err
    events = [json.loads(line) for line in err.splitlines()]
    [failure] = [e for e in events if e["event"] == "processing_failed"]
    assert failure["entry"] == poison
    assert failure["error"] == "KeyError"
    assert failure["control_id"] == "POISON-1"
    [recovered] = [e for e in events if e["event"] == "recovered"]
    assert (recovered["messages"], recovered["failed"]) == (3, 1)
    assert "Traceback" not in err
    words = set(re.split(r"[^A-Za-z0-9]+", err))
    assert not [value for value in PATIENT if value in words]
    assert first < poison < last


def test_close_answers_a_resend_watching_another_process_at_once(tmp_path: Path) -> None:
    """A re-send of a message that another (live) service process holds waits for that
    process; stopping must not wait for it (that process finishes the message)."""
    [entry] = stored(tmp_path, M02, owner=os.getppid())  # alive, and not us

    async def scenario(out: Path) -> None:
        intake = intake_at(out)
        ticket = await intake.submit(M02)
        await asyncio.sleep(0.05)
        assert intake.busy == 1  # watching the journal for the other process's answer
        started = time.monotonic()
        await intake.close(20.0)
        assert time.monotonic() - started < 5.0  # not the 20 s it was given
        reply = await asyncio.wait_for(ticket.reply, 1.0)
        assert (reply.code, reply.outcome) == ("AR", "unstored")
        assert "stopping" in field_of(reply.body, "ERR", 8)

    run(scenario, tmp_path)
    assert entry > 0


def test_close_answers_whatever_is_left_when_the_time_is_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A message that never finishes (a fault that hangs instead of raising) is answered
    AR at the shutdown deadline; it stays received, for the next start."""
    monkeypatch.setattr(Intake, "_work", lambda self, pending: None)

    async def scenario(out: Path) -> None:
        intake = intake_at(out)
        ticket = await intake.submit(M02)
        started = time.monotonic()
        await intake.close(0.3)
        assert 0.25 < time.monotonic() - started < 5.0
        reply = await asyncio.wait_for(ticket.reply, 1.0)
        assert (reply.code, reply.outcome) == ("AR", "unstored")
        journal = Journal(out)
        assert journal.counts() == {"received": 1}
        journal.close()

    run(scenario, tmp_path)

"""The MLLP listener over real loopback sockets: framing at the socket, ACKs and their
order, enhanced mode, MLLP release 2, limits, duplicates, failures of the store and the
sink, recovery after a stop, graceful shutdown."""

from __future__ import annotations

import asyncio
import errno
import json
import re
import sqlite3
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from leukofhir.batch.naming import safe_stem
from leukofhir.ingest.framing import split_messages
from leukofhir.serve.header import content_hash, read_header
from leukofhir.serve.journal import Arrival, Journal
from leukofhir.serve.work import Job, Processed, Processor
from tests.conftest import SAMPLES
from tests.serve.helpers import Peer, field_of, outputs, running, sample

Scenario = Callable[[Path], Awaitable[None]]


def run(scenario: Scenario, tmp_path: Path) -> None:
    asyncio.run(asyncio.wait_for(scenario(tmp_path), 60))


def msa(ack: bytes) -> tuple[str, str]:
    return field_of(ack, "MSA", 1), field_of(ack, "MSA", 2)


def errs(ack: bytes) -> list[str]:
    return [line.decode() for line in ack.split(b"\r") if line.startswith(b"ERR")]


M02, M03, M09 = (
    sample(n)
    for n in (
        "02-leukopenia-g1-wbc-3p0.hl7",
        "03-leukopenia-g2-wbc-2p99.hl7",
        "09-leukocytosis.hl7",
    )
)


def with_ack_fields(message: bytes, accept: str, application: str) -> bytes:
    """The message with MSH-15/16 set (enhanced acknowledgement mode)."""
    lines = message.replace(b"\r\n", b"\r").replace(b"\n", b"\r").split(b"\r")
    msh = lines[0].split(b"|")
    msh += [b""] * (16 - len(msh))
    msh[14], msh[15] = accept.encode(), application.encode()
    lines[0] = b"|".join(msh)
    return b"\r".join(lines)


def test_one_ack_per_message_in_order_with_the_header_swapped(tmp_path: Path) -> None:
    async def scenario(out: Path) -> None:
        async with running(out) as service:
            peer = await Peer.open(service.port)
            await peer.send(M02, M03, M09)  # three frames in one write
            acks = await peer.receive(3)
            await peer.close()
        assert [msa(a) for a in acks] == [("AA", field_of(m, "MSH", 10)) for m in (M02, M03, M09)]
        first = acks[0]
        assert field_of(first, "MSH", 9) == "ACK^R01^ACK"
        assert (field_of(first, "MSH", 3), field_of(first, "MSH", 4)) == (
            field_of(M02, "MSH", 5),
            field_of(M02, "MSH", 6),
        )
        assert (field_of(first, "MSH", 5), field_of(first, "MSH", 6)) == (
            field_of(M02, "MSH", 3),
            field_of(M02, "MSH", 4),
        )
        assert field_of(first, "MSH", 12) == field_of(M02, "MSH", 12)
        assert len({field_of(a, "MSH", 10) for a in acks}) == 3  # a new MSH-10 each
        bundles = [name for name in outputs(out) if name.endswith(".r1.bundle.json")]
        assert len(bundles) == 3

    run(scenario, tmp_path)


def test_notes_go_to_the_journal_warnings_to_an_operation_outcome_file(tmp_path: Path) -> None:
    unknown_unit = sample("21-unknown-wbc-unit.hl7")

    async def scenario(out: Path) -> None:
        async with running(out) as service:
            peer = await Peer.open(service.port)
            await peer.send(M09, unknown_unit)
            await peer.receive(2)
            await peer.close()
        names = outputs(out)
        stems = {field_of(m, "MSH", 10): m for m in (M09, unknown_unit)}
        notes_only, warned = ([n for n in names if safe_stem(cid) in n] for cid in stems)
        assert [n.rsplit(".", 3)[-3:] for n in notes_only] == [["r1", "bundle", "json"]]
        assert any(n.endswith(".outcome.json") for n in warned)
        db = sqlite3.connect(out / "journal.sqlite")
        notes = dict(db.execute("SELECT control_id, notes FROM messages").fetchall())
        db.close()
        assert "not used" in notes[field_of(M09, "MSH", 10)]
        assert notes[field_of(unknown_unit, "MSH", 10)] == "[]"

    run(scenario, tmp_path)


def test_a_frame_split_over_many_reads_and_bytes_outside_frames(
    tmp_path: Path, logs: pytest.CaptureFixture[str]
) -> None:
    async def scenario(out: Path) -> None:
        async with running(out) as service:
            peer = await Peer.open(service.port)
            data = b"noise\r\n" + b"\x0b" + M02 + b"\x1c\r" + b"junk"
            for start in range(0, len(data), 97):
                await peer.raw(data[start : start + 97])
                await asyncio.sleep(0)
            [ack] = await peer.receive(1)
            await peer.close()
        assert msa(ack) == ("AA", field_of(M02, "MSH", 10))

    run(scenario, tmp_path)
    assert '"bytes_outside_frame"' in logs.readouterr().err


def test_eof_inside_a_frame_stores_nothing_and_acks_nothing(
    tmp_path: Path, logs: pytest.CaptureFixture[str]
) -> None:
    async def scenario(out: Path) -> None:
        async with running(out) as service:
            peer = await Peer.open(service.port)
            await peer.raw(b"\x0b" + M02[:200])
            await peer.close()
            await asyncio.sleep(0.1)
            assert service.intake.busy == 0
        journal = Journal(out)
        assert sum(journal.counts().values()) == 0
        journal.close()
        assert outputs(out) == []

    run(scenario, tmp_path)
    assert "partial_frame_discarded" in logs.readouterr().err


def test_a_frame_over_the_limit_closes_the_connection(
    tmp_path: Path, logs: pytest.CaptureFixture[str]
) -> None:
    async def scenario(out: Path) -> None:
        async with running(out, max_frame=len(M02) + 100) as service:
            peer = await Peer.open(service.port)
            await peer.send(M02 + b"NTE|1||" + b"x" * 4096 + b"\r")
            assert await peer.closed()
            assert peer.frames == []
            await peer.close()
            again = await Peer.open(service.port)  # the listener itself goes on
            await again.send(M02)
            [ack] = await again.receive()
            await again.close()
        assert msa(ack)[0] == "AA"

    run(scenario, tmp_path)
    assert "frame_too_large" in logs.readouterr().err


def test_connections_over_the_limit_are_closed_and_idle_ones_time_out(tmp_path: Path) -> None:
    async def scenario(out: Path) -> None:
        async with running(out, max_connections=1, idle_timeout=0.3) as service:
            first = await Peer.open(service.port)
            await first.send(M02)
            await first.receive()
            second = await Peer.open(service.port)
            assert await second.closed()  # refused at once
            await second.close()
            started = time.monotonic()
            assert await first.closed()  # idle for 0.3 s
            assert 0.2 < time.monotonic() - started < 5
            await first.close()

    run(scenario, tmp_path)


def test_a_resent_message_gets_the_same_ack_and_no_new_output(tmp_path: Path) -> None:
    async def scenario(out: Path) -> None:
        async with running(out) as service:
            peer = await Peer.open(service.port)
            await peer.send(M02)
            [first] = await peer.receive()
            before = outputs(out)
            await peer.close()
            # a re-send after a lost ACK, from a client that ends segments differently
            resend = M02.replace(b"\r", b"\n").rstrip(b"\n")
            peer = await Peer.open(service.port)
            await peer.send(resend)
            [second] = await peer.receive()
            await peer.close()
            assert second == first
            assert outputs(out) == before
        journal = Journal(out)
        assert journal.counts() == {"processed": 1}
        journal.close()

    run(scenario, tmp_path)


def test_the_same_control_id_with_other_content_is_a_new_message(
    tmp_path: Path, logs: pytest.CaptureFixture[str]
) -> None:
    changed = M02.replace(b"|3.0|", b"|3.1|", 1)
    assert changed != M02

    async def scenario(out: Path) -> None:
        async with running(out) as service:
            peer = await Peer.open(service.port)
            await peer.send(M02, changed)
            first, second = await peer.receive(2)
            await peer.close()
        assert msa(first) == msa(second) == ("AA", field_of(M02, "MSH", 10))
        assert field_of(first, "MSH", 10) != field_of(second, "MSH", 10)
        # two messages; both are versions of one report with the same time and status, so
        # their contents order them: the second is applied, or superseded (skipped)
        journal = Journal(out)
        counts = journal.counts()
        journal.close()
        bundles = [n for n in outputs(out) if n.endswith(".r1.bundle.json")]
        assert counts in ({"processed": 2}, {"processed": 1, "skipped": 1})
        assert len(bundles) == counts["processed"]

    run(scenario, tmp_path)
    assert "control_id_reused" in logs.readouterr().err


def test_content_errors_ae_and_unsupported_ar_with_err_segments(tmp_path: Path) -> None:
    adt = sample("19-wrong-message-type-adt.hl7")
    malformed = sample("18-malformed-msh.hl7")

    async def scenario(out: Path) -> None:
        async with running(out) as service:
            peer = await Peer.open(service.port)
            await peer.send(adt, malformed)
            for_adt, for_malformed = await peer.receive(2)
            await peer.close()
        assert msa(for_adt) == ("AR", field_of(adt, "MSH", 10))
        [err] = errs(for_adt)
        assert "|200^Unsupported message type^HL70357|E|" in err
        assert "MSH^1^9^1" in err  # ERR-2: where
        code, _ = msa(for_malformed)
        assert code in {"AE", "AR"}
        assert errs(for_malformed)
        rejected = [n for n in outputs(out) if n.startswith("rejected/")]
        assert any(n.endswith(".hl7") for n in rejected)  # kept byte for byte
        assert any(n.endswith(".outcome.json") for n in rejected)

    run(scenario, tmp_path)


def test_several_messages_in_one_frame_are_refused_not_half_answered(tmp_path: Path) -> None:
    async def scenario(out: Path) -> None:
        async with running(out) as service:
            peer = await Peer.open(service.port)
            await peer.send(M02 + M03)  # one frame, two messages
            [ack] = await peer.receive()
            await peer.close()
        assert msa(ack) == ("AR", field_of(M02, "MSH", 10))
        assert "holds 2 HL7 messages" in errs(ack)[0]
        assert not [n for n in outputs(out) if n.startswith("processed/")]

    run(scenario, tmp_path)


def test_a_processing_id_other_than_p_t_d_is_refused_ar(tmp_path: Path) -> None:
    lines = M02.split(b"\r")
    msh = lines[0].split(b"|")
    msh[10] = b"X"
    training = b"\r".join([b"|".join(msh), *lines[1:]])

    async def scenario(out: Path) -> None:
        async with running(out) as service:
            peer = await Peer.open(service.port)
            await peer.send(training)
            [ack] = await peer.receive()
            await peer.close()
        assert msa(ack) == ("AR", field_of(M02, "MSH", 10))
        [err] = errs(ack)
        assert "202^Unsupported processing id" in err
        assert "MSH^1^11^1" in err
        rejected = [n for n in outputs(out) if n.startswith("rejected/")]
        assert len(rejected) == 2
        assert {n.endswith(".hl7") for n in rejected} == {True, False}  # + .outcome.json

    run(scenario, tmp_path)


@pytest.mark.parametrize(
    ("accept", "application", "message", "expected"),
    [
        ("AL", "AL", M02, ["CA", "AA"]),
        ("AL", "NE", M02, ["CA"]),
        ("NE", "AL", M02, ["AA"]),
        ("ER", "ER", M02, []),  # nothing went wrong: nothing to say
        ("SU", "SU", M02, ["CA", "AA"]),
        ("AL", "AL", sample("19-wrong-message-type-adt.hl7"), ["CR"]),  # refused: no app ACK
        ("ER", "AL", sample("19-wrong-message-type-adt.hl7"), ["CR"]),
    ],
)
def test_enhanced_mode_sends_what_msh15_and_msh16_ask_for(
    tmp_path: Path, accept: str, application: str, message: bytes, expected: list[str]
) -> None:
    enhanced = with_ack_fields(message, accept, application)
    marker = M09  # original mode: its ACK comes right after what the first one got

    async def scenario(out: Path) -> None:
        async with running(out) as service:
            peer = await Peer.open(service.port)
            await peer.send(enhanced, marker)
            frames = await peer.receive(len(expected) + 1)
            await peer.close()
        *answers, last = frames
        assert [msa(a)[0] for a in answers] == expected
        assert all(msa(a)[1] == field_of(message, "MSH", 10) for a in answers)
        assert msa(last) == ("AA", field_of(marker, "MSH", 10))

    run(scenario, tmp_path)


def test_mllp_release_2_commit_block_then_the_ack(tmp_path: Path) -> None:
    async def scenario(out: Path) -> None:
        async with running(out, release=2) as service:
            peer = await Peer.open(service.port)
            await peer.send(M02)
            commit, ack = await peer.receive(2)
            await peer.send(b"\x06")  # our ACK committed by the peer: not a message
            await peer.send(M03)
            commit2, ack2 = await peer.receive(2)
            await peer.close()
        assert commit == commit2 == b"\x06"
        assert msa(ack) == ("AA", field_of(M02, "MSH", 10))
        assert msa(ack2) == ("AA", field_of(M03, "MSH", 10))
        journal = Journal(out)
        assert journal.counts() == {"processed": 2}
        journal.close()

    run(scenario, tmp_path)


def test_journal_unavailable_ar_then_a_resend_succeeds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scenario(out: Path) -> None:
        async with running(out) as service:
            journal = service.intake.journal
            original = journal.receive

            def broken(*_: Any, **__: Any) -> Any:
                raise sqlite3.OperationalError("database or disk is full")

            monkeypatch.setattr(journal, "receive", broken)
            peer = await Peer.open(service.port)
            await peer.send(M02)
            [refused] = await peer.receive()
            assert outputs(out) == []
            monkeypatch.setattr(journal, "receive", original)
            await peer.send(M02)
            [accepted] = await peer.receive()
            await peer.close()
        assert msa(refused) == ("AR", field_of(M02, "MSH", 10))
        [err] = errs(refused)
        assert "207^Application internal error" in err
        assert "send it again" in err
        assert msa(accepted)[0] == "AA"

    run(scenario, tmp_path)


def test_sink_failure_ar_keeps_the_message_and_a_resend_finishes_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scenario(out: Path) -> None:
        async with running(out) as service:
            sink = service.intake.sink
            original = sink.deliver

            def full(*_: Any, **__: Any) -> Any:
                raise OSError(errno.ENOSPC, "No space left on device")

            monkeypatch.setattr(sink, "deliver", full)
            peer = await Peer.open(service.port)
            await peer.send(M02)
            [refused] = await peer.receive()
            assert service.intake.journal.counts() == {"received": 1}  # kept, not finished
            monkeypatch.setattr(sink, "deliver", original)
            await peer.send(M02)
            [accepted] = await peer.receive()
            await peer.close()
        assert msa(refused)[0] == "AR"
        assert msa(accepted)[0] == "AA"
        assert [n for n in outputs(out) if n.endswith(".r1.bundle.json")]

    run(scenario, tmp_path)


def test_messages_stored_but_unfinished_are_processed_at_start(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    header = read_header(M02)
    arrival = Arrival(header.sender, header.control_id, content_hash(M02), "hl7v2", "mllp", M02)
    [entry] = journal.receive([arrival], "2026-01-01T00:00:00+00:00")
    journal.close()

    async def scenario(out: Path) -> None:
        async with running(out) as service:
            async with asyncio.timeout(10):
                while service.intake.busy:
                    await asyncio.sleep(0.01)
            peer = await Peer.open(service.port)  # the sender re-sends: stored answer
            await peer.send(M02)
            [ack] = await peer.receive()
            await peer.close()
        assert msa(ack) == ("AA", field_of(M02, "MSH", 10))
        assert field_of(ack, "MSH", 10) == f"LF{entry.id}"  # the ACK made at recovery

    run(scenario, tmp_path)
    bundles = [n for n in outputs(tmp_path) if n.endswith(".r1.bundle.json")]
    assert len(bundles) == 1
    assert b'"recorded":"2026-01-01T00:00:00+00:00"' in (tmp_path / bundles[0]).read_bytes()


def test_shutdown_finishes_and_acknowledges_the_message_in_hand(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    slow_run = Processor.run_one

    def slow(self: Processor, job: Job, *args: Any, **kwargs: Any) -> Processed:
        time.sleep(0.5)
        return slow_run(self, job, *args, **kwargs)

    monkeypatch.setattr(Processor, "run_one", slow)

    async def scenario(out: Path) -> None:
        async with running(out) as service:
            idle = await Peer.open(service.port)
            busy = await Peer.open(service.port)
            await busy.send(M02)
            await asyncio.sleep(0.1)  # the message is in hand
            closing = asyncio.create_task(service.listener.close(5.0))
            [ack] = await busy.receive()
            assert await busy.closed()
            assert await idle.closed()
            await closing
            await idle.close()
            await busy.close()
        assert msa(ack)[0] == "AA"

    run(scenario, tmp_path)


def test_pipelined_messages_keep_their_order(tmp_path: Path) -> None:
    messages = [M02, M03, M09] * 7

    async def scenario(out: Path) -> None:
        async with running(out) as service:
            peer = await Peer.open(service.port)
            await peer.send(*messages)
            acks = await peer.receive(len(messages))
            await peer.close()
        assert [msa(a) for a in acks] == [("AA", field_of(m, "MSH", 10)) for m in messages]

    run(scenario, tmp_path)


def test_service_logs_carry_no_patient_data(
    tmp_path: Path, logs: pytest.CaptureFixture[str]
) -> None:
    """Every sample through the listener; no PID name, identifier, date or address in the
    log lines, which are all JSON."""
    messages = [
        raw.data
        for path in sorted(SAMPLES.glob("*.hl7"))
        for raw in split_messages(path.read_bytes())
    ]
    pid_values = set()
    for message in messages:
        for line in message.replace(b"\n", b"\r").split(b"\r"):
            if line.startswith(b"PID|"):
                fields = line.decode("utf-8", "replace").split("|")
                for index in (3, 5, 7, 11, 13, 19):
                    if index < len(fields):
                        parts = fields[index].replace("~", "^").split("^")
                        pid_values.update(part for part in parts if len(part) >= 4)
    assert len(pid_values) > 20

    async def scenario(out: Path) -> None:
        async with running(out) as service:
            peer = await Peer.open(service.port)
            await peer.send(*messages)
            await peer.receive(len(messages))
            await peer.close()

    run(scenario, tmp_path)
    err = logs.readouterr().err
    lines = err.splitlines()
    assert len([line for line in lines if '"event":"message"' in line]) == len(messages)
    for line in lines:
        json.loads(line)
    words = set(re.split(r"[^A-Za-z0-9]+", err))
    assert not sorted(value for value in pid_values if value in words)

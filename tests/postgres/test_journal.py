"""The journal's contract on both backends (SQLite, PostgreSQL): receipts and re-sends,
outcomes with the patients' states (a stale read is refused), failed messages, retention,
the outbox's documents per message; and what only PostgreSQL has: owners that are sessions
(alive while connected, of any host), orphans, and deliverers that claim documents.

The PostgreSQL cases run against a throw-away cluster (tests/pgcluster.py) and skip with
the reason when PostgreSQL or psycopg is not here."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from leukofhir.cli import main
from leukofhir.delivery.outbox import Document
from leukofhir.errors import UsageError
from leukofhir.lifecycle.state import PatientState
from leukofhir.serve.header import content_hash
from leukofhir.serve.journal import Arrival, Completion, Journal, open_journal
from leukofhir.serve.states import Changes
from leukofhir.serve.work import Outbound

RECEIVED = "2026-01-05T08:00:00+00:00"
Opener = Callable[..., Journal]


@pytest.fixture(params=["sqlite", "postgresql"])
def opener(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opener]:
    """Opens journals on one store (each its own connection, like service processes)."""
    where = "" if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    opened: list[Journal] = []

    def open_(**options: bool) -> Journal:
        opened.append(open_journal(tmp_path, where, **options))
        return opened[-1]

    yield open_
    for journal in opened:
        journal.close()


@pytest.fixture
def url(postgres_url: str) -> str:
    return postgres_url


def arrival(data: bytes, control_id: str = "C1") -> Arrival:
    return Arrival("LAB|FAC", control_id, content_hash(data), "hl7v2", "mllp", data)


def done(entry: int, **fields: object) -> Completion:
    return Completion(entry, "processed", "AA", b"MSH|AA", **fields)  # type: ignore[arg-type]


def test_a_resend_gets_its_first_entry_and_its_stored_reply(opener: Opener) -> None:
    first, second = opener(), opener()
    [entry] = first.receive([arrival(b"MSH|1")], RECEIVED, owner=first.owner)
    [again] = second.receive([arrival(b"MSH|1")], RECEIVED, owner=second.owner)
    assert (entry.new, again.new, again.id, again.owner) == (True, False, entry.id, first.owner)
    [other] = second.receive([arrival(b"MSH|other")], RECEIVED)
    assert other.new
    assert other.reused_id
    assert first.complete([done(entry.id)], RECEIVED) == []
    [finished] = second.receive([arrival(b"MSH|1")], RECEIVED)
    assert (finished.state, finished.reply, finished.ack) == ("done", b"MSH|AA", "AA")
    assert second.data(entry.id) == b"MSH|1"
    assert second.counts() == {"processed": 1, "received": 1}


def test_a_commit_whose_patient_changed_since_it_read_is_refused(opener: Opener) -> None:
    first, second = opener(), opener()
    one, two = first.receive([arrival(b"MSH|1", "C1"), arrival(b"MSH|2", "C2")], RECEIVED)
    stored, _ = first.states.read("P1")  # both read the same (no state yet)
    assert stored is None
    new = PatientState(reports=())
    changes = Changes(read={"P1": None}, states={"P1": new})
    assert second.complete([done(one.id, changes=changes)], RECEIVED) == []
    assert first.complete([done(two.id, changes=changes)], RECEIVED) == [two.id]  # stale
    stored, state = first.states.read("P1")
    assert stored is not None
    assert state == new
    assert first.entry(two.id).state == "received"  # type: ignore[union-attr]
    again = Changes(read={"P1": stored}, states={"P1": new})
    assert first.complete([done(two.id, changes=again)], RECEIVED) == []


def test_failed_messages_are_retried_dropped_and_only_done_ones_pruned(opener: Opener) -> None:
    journal = opener()
    one, two, three = journal.receive(
        [arrival(b"MSH|1", "C1"), arrival(b"MSH|2", "C2"), arrival(b"MSH|3", "C3")], RECEIVED
    )
    failed = Completion(one.id, "failed", "AR", b"MSH|AR", reason="KeyError at x.py:1 f")
    journal.complete([failed, done(two.id)], "2026-01-05T09:00:00+00:00")
    assert [(f.id, f.reason) for f in journal.failed()] == [(one.id, "KeyError at x.py:1 f")]
    assert journal.prune("2026-01-06T00:00:00+00:00") == 1  # two; not the failed one
    assert journal.retry(one.id)
    assert not journal.retry(one.id)
    assert [(p.id, p.owner) for p in journal.pending()] == [(one.id, 0), (three.id, 0)]
    journal.complete([failed], RECEIVED)
    assert journal.drop(one.id)
    assert not journal.drop(one.id)
    assert journal.counts() == {"received": 1}


def test_documents_are_queued_with_the_outcome_and_counted_per_message(opener: Opener) -> None:
    journal = opener(outbox=True)
    entries = journal.receive([arrival(b"MSH|%d" % i, f"C{i}") for i in range(12)], RECEIVED)
    bundles = (Outbound("a.json", "P1", b"{}"), Outbound("b.json", "P1", b"{}"))
    journal.complete([done(e.id, documents=bundles) for e in entries], RECEIVED)
    assert journal.outbox is not None
    ready = journal.outbox.ready(1e12, 100)
    assert len(ready) == 1
    assert ready[0].key == f"j{entries[0].id}/a.json"
    journal.outbox.delivered(ready[0].id, 1.0, 200)
    assert [journal.delivery(e.id).delivered for e in entries[:2]] == [1, 0]
    assert journal.delivery(entries[1].id).documents == 2  # j2/ is not j12/


# -- PostgreSQL only ---------------------------------------------------------------------------


def gone(condition: Callable[[], bool]) -> bool:
    """A closed session's backend ends a moment after the client goes: wait for it."""
    deadline = time.monotonic() + 5
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_an_owner_is_alive_while_its_session_is_and_its_messages_are_orphans_after(
    url: str, tmp_path: Path
) -> None:
    first, second = open_journal(tmp_path, url), open_journal(tmp_path, url)
    [entry] = first.receive([arrival(b"MSH|1")], RECEIVED, owner=first.owner)
    assert first.owner != second.owner
    assert second.alive(first.owner)
    assert second.pending() == []  # a live session's: not an orphan
    assert not second.claim(entry.id, second.owner, first.owner)
    first.close()
    assert gone(lambda: not second.alive(first.owner))  # once its backend has ended
    assert [p.id for p in second.pending([1234])] == [entry.id]  # pids mean nothing here
    assert second.claim(entry.id, second.owner, first.owner)
    assert not second.claim(entry.id, second.owner, first.owner)  # one claim wins
    second.close()


def test_two_deliverers_never_hold_one_document_and_a_dead_ones_are_free(
    url: str, tmp_path: Path
) -> None:
    from leukofhir.serve.pgjournal import open_outbox

    journal = open_journal(tmp_path, url, outbox=True)
    assert journal.outbox is not None
    journal.outbox.enqueue([Document(f"k{i}", f"P{i % 3}", i, b"{}") for i in range(6)], 0.0)
    first, second = open_outbox(url), open_outbox(url)
    taken = first.ready(1e12, 10)
    assert sorted(p.key for p in taken) == ["k0", "k1", "k2"]  # the first of each patient
    assert second.ready(1e12, 10) == []
    assert second.next_due() is None
    first.delivered(taken[0].id, 1.0, 200)
    assert [p.key for p in second.ready(1e12, 10)] == ["k3"]  # P0's next, after k0
    first.close()  # its claims go with its session
    assert gone(lambda: second.next_due() is not None)
    assert sorted(p.key for p in second.ready(1e12, 10, busy={"P0"})) == ["k1", "k2"]
    second.close()
    journal.close()


def test_a_bad_or_unreachable_url_is_a_located_error_without_the_password(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("psycopg", reason="psycopg is not installed (leukofhir[postgres])")
    from tests.pgcluster import free_port

    url = f"postgresql://alice:s3cret@127.0.0.1:{free_port()}/db?connect_timeout=2"
    with pytest.raises(UsageError) as raised:
        open_journal(tmp_path, url)
    assert "postgresql://127.0.0.1:" in str(raised.value)
    assert "s3cret" not in str(raised.value)
    assert main(["journal", url]) == 2
    assert main(["deliver", url, "--status"]) == 2
    err = capsys.readouterr().err
    assert "s3cret" not in err
    assert "Traceback" not in err
    assert "127.0.0.1" in err


def test_the_journal_setting_comes_from_the_environment_or_the_file_and_must_be_a_url(
    tmp_path: Path,
) -> None:
    from leukofhir.errors import ConfigError
    from leukofhir.serve.config import load_config

    url = "postgresql://leukofhir@db.example/journal"
    assert load_config({}, environ={"LEUKOFHIR_JOURNAL": url}).journal == url
    file = tmp_path / "serve.toml"
    file.write_text(f'[serve]\njournal = "{url}"\n')
    assert load_config({}, environ={}, file=file).journal == url
    assert load_config({}, environ={}).journal == ""  # OUT/journal.sqlite
    with pytest.raises(ConfigError, match=r"journal \(--journal\): .*not a postgresql:// URL"):
        load_config({"journal": "/var/lib/journal.sqlite"}, environ={})

"""The outbox on its own: durable queue, one patient strictly in order, dead letters hold
the line (files under dead/), re-queueing, counts."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import orjson
import pytest

from leukofhir.delivery.deadletter import dead_letter_name
from leukofhir.delivery.outbox import Document, SqliteOutbox

OUTCOME = b'{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"invalid"}]}'


def doc(key: str, patient: str, seq: int, data: bytes | None = None) -> Document:
    return Document(key, patient, seq, data or f'{{"doc":"{key}"}}'.encode())


@pytest.fixture
def outbox(tmp_path: Path) -> SqliteOutbox:
    return SqliteOutbox.open(tmp_path / "outbox.sqlite", dead_letters=tmp_path / "dead")


def keys(
    outbox: SqliteOutbox, now: float = 100.0, limit: int = 99, busy: tuple[str, ...] = ()
) -> list[str]:
    return [p.key for p in outbox.ready(now, limit, busy)]


def test_one_document_per_patient_in_seq_order(outbox: SqliteOutbox) -> None:
    outbox.enqueue([doc("a2", "A", 2), doc("b1", "B", 1), doc("a1", "A", 1), doc("c9", "C", 9)], 0)
    assert keys(outbox) == ["b1", "a1", "c9"]
    assert keys(outbox, busy=("A",)) == ["b1", "c9"]
    assert keys(outbox, limit=1) == ["b1"]
    a1 = outbox.ready(100, 99)[1]
    outbox.delivered(a1.id, 101, 200)
    assert keys(outbox) == ["b1", "a2", "c9"]


def test_same_seq_keeps_queueing_order(outbox: SqliteOutbox) -> None:
    outbox.enqueue([doc("x", "P", 0), doc("y", "P", 0)], 0)
    assert keys(outbox) == ["x"]


def test_a_retry_waits_and_holds_its_patient(outbox: SqliteOutbox) -> None:
    outbox.enqueue([doc("a1", "A", 1), doc("a2", "A", 2), doc("b1", "B", 1)], 0)
    a1 = outbox.ready(10, 1)[0]
    outbox.retry(
        a1.id,
        first_attempt=10,
        next_attempt=50,
        status=503,
        reason="HTTP 503",
        progress={3: "Patient/x"},
    )
    assert keys(outbox, now=20) == ["b1"]  # a2 never overtakes a1
    assert outbox.next_due() == 0.0
    assert outbox.next_due(busy=("B",)) == 50.0
    again = next(p for p in outbox.ready(50, 99) if p.key == "a1")
    assert (again.key, again.attempts, again.first_attempt, dict(again.progress)) == (
        "a1",
        1,
        10.0,
        {3: "Patient/x"},
    )
    counts = outbox.counts(20)
    assert (counts.pending, counts.scheduled, counts.retries) == (3, 1, 1)


def test_dead_letter_holds_the_patients_later_documents(
    outbox: SqliteOutbox, tmp_path: Path
) -> None:
    outbox.enqueue([doc("a1", "A", 1), doc("a2", "A", 2), doc("a3", "A", 3), doc("b1", "B", 1)], 0)
    a1 = outbox.ready(1, 99)[0]
    outbox.dead(
        a1.id, 2, status=400, reason="HTTP 400 (error invalid)", outcome=OUTCOME, progress={}
    )
    assert keys(outbox) == ["b1"]
    assert outbox.next_due(busy=("B",)) is None  # nothing else may go: held, not waiting
    counts = outbox.counts(5)
    assert (counts.pending, counts.held, counts.dead) == (3, 2, 1)
    (letter,) = outbox.dead_letters()
    assert (letter.key, letter.status, letter.outcome) == ("a1", 400, OUTCOME)
    name = dead_letter_name("a1")
    assert name.startswith("a1_")
    assert (tmp_path / "dead" / f"{name}.bundle.json").read_bytes() == b'{"doc":"a1"}'
    assert (tmp_path / "dead" / f"{name}.outcome.json").read_bytes() == OUTCOME

    assert outbox.retry_dead() == 1
    assert list((tmp_path / "dead").iterdir()) == []
    assert keys(outbox) == ["a1", "b1"]
    record = outbox.record("a1")
    assert record is not None
    assert (record.state, record.attempts) == ("pending", 0)


def test_abandon_releases_the_line_and_keeps_the_letter(
    outbox: SqliteOutbox, tmp_path: Path
) -> None:
    outbox.enqueue([doc("a1", "A", 1), doc("a2", "A", 2)], 0)
    a1 = outbox.ready(1, 9)[0]
    outbox.dead(a1.id, 2, status=None, reason="gave up", outcome=None, progress={})
    outcome = next((tmp_path / "dead").glob("*.outcome.json")).read_bytes()
    assert orjson.loads(outcome)["issue"][0]["code"] == "transient"  # ours: the server sent none
    assert outbox.abandon([a1.id]) == 1
    assert keys(outbox) == ["a2"]
    assert outbox.counts(3).abandoned == 1
    assert len(list((tmp_path / "dead").iterdir())) == 2


def test_queueing_again(outbox: SqliteOutbox) -> None:
    assert outbox.enqueue([doc("a1", "A", 1), doc("a2", "A", 2)], 0) == 2
    assert outbox.enqueue([doc("a1", "A", 1), doc("a2", "A", 2)], 1) == 0  # a resume: nothing new
    first = outbox.ready(1, 9)[0]
    outbox.delivered(first.id, 2, 200)
    outbox.dead(outbox.ready(3, 9)[0].id, 3, status=400, reason="x", outcome=None, progress={})
    changed = [doc("a1", "A", 1, b'{"v":2}'), doc("a2", "A", 2, b'{"v":2}')]
    assert outbox.enqueue(changed, 4) == 2  # new bytes: pending again, dead letter cleared
    assert keys(outbox) == ["a1"]
    assert outbox.ready(5, 9)[0].data == b'{"v":2}'
    assert outbox.counts(5).dead == 0


def test_stop_keeps_the_document_pending(outbox: SqliteOutbox) -> None:
    outbox.enqueue([doc("a1", "A", 1)], 0)
    item = outbox.ready(1, 9)[0]
    outbox.stopped(item.id, 401, "HTTP 401")
    record = outbox.record("a1")
    assert record is not None
    assert (record.state, record.last_status, record.attempts) == (
        "pending",
        401,
        1,
    )
    assert keys(outbox) == ["a1"]


def test_counts_and_age(outbox: SqliteOutbox) -> None:
    assert outbox.counts(0).oldest_pending_age is None
    outbox.enqueue([doc("a1", "A", 1)], 10)
    outbox.enqueue([doc("b1", "B", 1)], 20)
    counts = outbox.counts(25)
    assert (counts.pending, counts.delivered, counts.oldest_pending_age) == (2, 0, 15)


def test_lives_in_another_database_beside_its_tables(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "ledger.sqlite", isolation_level=None)
    db.execute("CREATE TABLE messages (id INTEGER PRIMARY KEY, outcome TEXT)")
    outbox = SqliteOutbox(db)
    db.execute("BEGIN IMMEDIATE")
    db.execute("INSERT INTO messages (outcome) VALUES ('processed')")
    outbox.stage([doc("a1", "A", 1)], 0)
    db.execute("ROLLBACK")  # the caller's transaction decides: neither row is kept
    assert outbox.counts(0).pending == 0
    db.execute("BEGIN IMMEDIATE")
    outbox.stage([doc("a1", "A", 1)], 0)
    db.execute("COMMIT")
    other = SqliteOutbox.open(tmp_path / "ledger.sqlite")
    assert [p.key for p in other.ready(1, 9)] == ["a1"]
    tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert tables == {"messages", "outbox", "outbox_data", "outbox_meta"}
    with pytest.raises(ValueError, match="isolation_level=None"):
        SqliteOutbox(sqlite3.connect(":memory:"))


def test_delivered_bytes_are_dropped_and_schema_1_is_upgraded(tmp_path: Path) -> None:
    """Schema 1 kept the bytes in the row; opened now, they move to ``outbox_data`` (but
    those of delivered documents), and the documents go on as they were."""
    db = sqlite3.connect(tmp_path / "old.sqlite", isolation_level=None)
    db.executescript(
        """CREATE TABLE outbox_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        INSERT INTO outbox_meta VALUES ('schema_version', '1');
        CREATE TABLE outbox (id INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE,
            patient TEXT NOT NULL, seq INTEGER NOT NULL, data BLOB NOT NULL,
            sha256 TEXT NOT NULL, state TEXT NOT NULL, enqueued REAL NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0, retries INTEGER NOT NULL DEFAULT 0,
            first_attempt REAL, next_attempt REAL NOT NULL DEFAULT 0, last_status INTEGER,
            reason TEXT NOT NULL DEFAULT '', outcome BLOB, progress TEXT NOT NULL DEFAULT '{}',
            finished REAL);
        INSERT INTO outbox (key, patient, seq, data, sha256, state, enqueued, finished)
            VALUES ('a', 'p', 1, x'7b7d', 'x', 'delivered', 0, 1),
                   ('b', 'p', 2, x'5b5d', 'y', 'pending', 0, NULL);"""
    )
    db.close()
    with SqliteOutbox.open(tmp_path / "old.sqlite") as outbox:
        assert outbox.meta("schema_version") == "2"
        (pending,) = outbox.ready(10, 5)
        assert (pending.key, pending.data) == ("b", b"[]")
        outbox.delivered(pending.id, 11, 200)
        assert outbox.ready(10, 5) == []
        assert outbox.counts(12).delivered == 2
    db = sqlite3.connect(tmp_path / "old.sqlite")
    assert db.execute("SELECT COUNT(*) FROM outbox_data").fetchone() == (0,)  # none kept
    assert "data" not in {row[1] for row in db.execute("PRAGMA table_info(outbox)")}
    db.close()

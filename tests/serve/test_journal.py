"""The journal: failed messages (list, retry, drop), retention's ``prune``, the upgrade of a
schema-1 journal in place, and the ``leukofhir journal`` command."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from leukofhir.cli import main
from leukofhir.errors import UsageError
from leukofhir.serve.header import content_hash
from leukofhir.serve.journal import Arrival, Completion, Journal

RECEIVED = "2026-01-05T08:00:00+00:00"

# schema 1 as leukofhir 0.1.0 created it (before failed messages and retention)
SCHEMA_1 = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE messages (
    id INTEGER PRIMARY KEY,
    sender TEXT NOT NULL,
    control_id TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    format TEXT NOT NULL,
    channel TEXT NOT NULL,
    received TEXT NOT NULL,
    data BLOB NOT NULL,
    state TEXT NOT NULL,
    owner INTEGER NOT NULL DEFAULT 0,
    outcome TEXT NOT NULL DEFAULT '',
    ack TEXT NOT NULL DEFAULT '',
    reply BLOB,
    reports INTEGER NOT NULL DEFAULT 0,
    findings TEXT NOT NULL DEFAULT '[]',
    outputs TEXT NOT NULL DEFAULT '[]',
    notes TEXT NOT NULL DEFAULT '[]',
    UNIQUE (sender, control_id, sha256)
);
CREATE INDEX messages_received ON messages (state) WHERE state = 'received';
INSERT INTO meta VALUES ('schema_version', '1');
"""


def arrival(data: bytes, control_id: str = "C1", sender: str = "LAB|FAC") -> Arrival:
    return Arrival(sender, control_id, content_hash(data), "hl7v2", "mllp", data)


def failed(journal: Journal, entry: int, reason: str = "KeyError at x.py:1 f") -> None:
    journal.complete([Completion(entry, "failed", "AR", b"MSH|AR", reason=reason)], RECEIVED)


def test_a_failed_message_is_finished_listed_retried_and_dropped(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    one, two = journal.receive([arrival(b"MSH|1", "C1"), arrival(b"MSH|2", "C2")], RECEIVED)
    failed(journal, one.id)
    failed(journal, two.id)
    [again] = journal.receive([arrival(b"MSH|1", "C1")], "2026-01-06T00:00:00+00:00")
    assert (again.new, again.finished, again.state) == (False, True, "failed")
    assert (again.reply, again.ack, again.reason) == (b"MSH|AR", "AR", "KeyError at x.py:1 f")
    assert journal.pending() == []  # never processed again by itself
    assert [(f.id, f.control_id, f.reason, f.finished) for f in journal.failed()] == [
        (one.id, "C1", "KeyError at x.py:1 f", RECEIVED),
        (two.id, "C2", "KeyError at x.py:1 f", RECEIVED),
    ]
    assert journal.counts() == {"failed": 2}

    assert journal.retry(one.id)
    assert not journal.retry(one.id)  # not failed any more
    [pending] = journal.pending([0])  # nobody's: the first process that looks takes it
    assert (pending.id, pending.owner, pending.data) == (one.id, 0, b"MSH|1")
    assert journal.entry(one.id) is not None
    assert not journal.drop(one.id)  # only failed messages are dropped
    assert journal.drop(two.id)
    assert journal.entry(two.id) is None
    [resent] = journal.receive([arrival(b"MSH|2", "C2")], RECEIVED)
    assert resent.new  # dropped: a re-send is a new message
    journal.close()


def test_prune_deletes_only_done_messages_finished_before_the_cutoff(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    rows = journal.receive([arrival(f"MSH|{i}".encode(), f"C{i}") for i in range(6)], RECEIVED)
    old, old2, new, bad, _waiting, old3 = (r.id for r in rows)
    done = [Completion(i, "processed", "AA", b"ACK") for i in (old, old2, old3)]
    journal.complete(done, "2026-01-05T08:00:00+00:00")
    journal.complete([Completion(new, "processed", "AA", b"ACK")], "2026-02-05T08:00:00+00:00")
    failed(journal, bad)  # failed on 2026-01-05: old, but never pruned
    cutoff = "2026-01-10T00:00:00+00:00"
    assert journal.prune(cutoff, limit=2) == 2  # a batch at most
    assert journal.prune(cutoff, limit=2) == 1
    assert journal.prune(cutoff, limit=2) == 0
    assert journal.counts() == {"processed": 1, "failed": 1, "received": 1}
    assert {f.id for f in journal.failed()} == {bad}
    journal.close()


def test_a_schema_1_journal_is_upgraded_in_place(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    db = sqlite3.connect(path)
    db.executescript(SCHEMA_1)
    for row in (
        (1, "C1", "2026-01-01T00:00:00+00:00", "done", "processed", "AA", b"ACK1"),
        (2, "C2", "2026-01-02T00:00:00+00:00", "received", "", "", None),
    ):
        db.execute(
            "INSERT INTO messages (id, sender, control_id, sha256, format, channel, received,"
            " data, state, outcome, ack, reply) VALUES (?, 'L|F', ?, ?, 'hl7v2', 'mllp', ?,"
            " ?, ?, ?, ?, ?)",
            (row[0], row[1], f"h{row[0]}", row[2], b"MSH|" + row[1].encode(), *row[3:]),
        )
    db.commit()
    db.close()

    journal = Journal(tmp_path)
    assert journal.counts() == {"processed": 1, "received": 1}
    [pending] = journal.pending()
    assert (pending.id, pending.data) == (2, b"MSH|C2")
    done = journal.entry(1)
    assert done is not None
    assert (done.state, done.reply, done.reason) == ("done", b"ACK1", "")
    # an upgraded done row is kept from when it was received
    assert journal.prune("2026-01-01T00:00:01+00:00") == 1
    failed(journal, 2)
    assert [f.id for f in journal.failed()] == [2]
    journal.close()
    db = sqlite3.connect(path)
    assert db.execute("SELECT value FROM meta").fetchall() == [("2",)]
    indexes = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert {"messages_received", "messages_failed", "messages_done"} <= indexes
    db.close()
    Journal(tmp_path).close()  # opened again: nothing to do


def test_a_journal_of_a_newer_schema_is_refused(tmp_path: Path) -> None:
    Journal(tmp_path).close()
    db = sqlite3.connect(tmp_path / "journal.sqlite")
    db.execute("UPDATE meta SET value = '3' WHERE key = 'schema_version'")
    db.commit()
    db.close()
    with pytest.raises(UsageError, match="journal schema 3"):
        Journal(tmp_path)


# -- leukofhir journal ---------------------------------------------------------------------------


def test_journal_command_lists_failed_messages_without_content_retries_and_drops(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    journal = Journal(tmp_path)
    secret = b"MSH|^~\\&|LAB|FAC|||||ORU^R01|C1|P|2.5\rPID|1||SECRET-MRN||DOE^JANE\r"
    one, two, _ = journal.receive(
        [arrival(secret, "C1"), arrival(b"MSH|2", "C2\x1b[2J"), arrival(b"MSH|3", "C3")],
        RECEIVED,
    )
    failed(journal, one.id)
    failed(journal, two.id, "RecursionError at ingest/fhir.py:9 read")
    journal.close()

    assert main(["journal", str(tmp_path), "--failed", "--format", "ndjson"]) == 0
    listed = capsys.readouterr().out
    rows = [json.loads(line) for line in listed.splitlines()]
    assert rows == [
        {
            "id": one.id,
            "received": RECEIVED,
            "sender": "LAB|FAC",
            "control_id": "C1",
            "format": "hl7v2",
            "reason": "KeyError at x.py:1 f",
        },
        {
            "id": two.id,
            "received": RECEIVED,
            "sender": "LAB|FAC",
            "control_id": "C2\x1b[2J",  # as sent; escaped by JSON
            "format": "hl7v2",
            "reason": "RecursionError at ingest/fhir.py:9 read",
        },
    ]
    assert main(["journal", str(tmp_path), "--failed", "--format", "table"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["id", "received", "sender", "control_id", "format", "reason"]
    assert table[1].split()[:5] == [str(one.id), RECEIVED, "LAB|FAC", "C1", "hl7v2"]
    assert "SECRET" not in listed + "\n".join(table)
    assert table[2].split()[3] == "C2?[2J"  # no control character to the terminal
    assert "DOE" not in listed + "\n".join(table)

    assert main(["journal", str(tmp_path), "--retry", str(one.id)]) == 0
    assert f"journal entry {one.id}: put back" in capsys.readouterr().out
    assert main(["journal", str(tmp_path), "--drop", str(two.id)]) == 0
    assert f"journal entry {two.id}: deleted" in capsys.readouterr().out
    assert main(["journal", str(tmp_path), "--format", "ndjson"]) == 0
    counts = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert counts == [{"state": "received", "messages": 2}]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--retry", "1"], "journal entry 1 is not a failed message"),
        (["--drop", "99"], "journal entry 99 is not a failed message"),
        (["--failed"], "no journal at"),
    ],
)
def test_journal_command_refuses_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], options: list[str], message: str
) -> None:
    if message != "no journal at":
        journal = Journal(tmp_path)
        journal.receive([arrival(b"MSH|1")], RECEIVED)  # received, not failed
        journal.close()
    assert main(["journal", str(tmp_path), *options]) == 2
    err = capsys.readouterr().err
    assert err.startswith("leukofhir: ")
    assert message in err
    assert "Traceback" not in err

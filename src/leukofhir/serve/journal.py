"""The service's journal: one SQLite database (WAL mode) that records every received
message *before* it is acknowledged, then its outcome and outputs.

Table ``messages``: one row per distinct message, unique on (``sender``, ``control_id``,
``sha256``) where ``sender`` is MSH-3 and MSH-4 as sent (empty for FHIR over HTTP) and
``sha256`` is taken over the message with its segment ends normalised (a client that drops
the final ``\\r`` or sends ``\\n`` re-sends the *same* message).  ``state`` is ``received``
(stored, not yet processed: a crash here is finished on restart) or ``done``; a done row
keeps the reply that was sent (the ACK, or the HTTP body for FHIR), which a re-send gets
again without new output.  ``owner`` is the process id of the service process working on
a received row: a re-send reaching another process waits for that one while it lives, and
takes the message over when it died.

With ``durable`` (the default) the commit of an outcome is synced (``synchronous=FULL``),
and so is a receipt when the caller asks (it is about to say "stored" before the outcome
exists); other receipts are written without a sync of their own, and the next synced
commit makes them durable too (the WAL is one sequential file).  An acknowledged message
survives a power cut, not only a crash of the process.

Each service process opens its own connection; SQLite serialises the writers.
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Arrival", "Completion", "Entry", "Journal", "Pending"]

JOURNAL_NAME = "journal.sqlite"
SCHEMA_VERSION = "1"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS messages (
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
CREATE INDEX IF NOT EXISTS messages_received ON messages (state) WHERE state = 'received';
"""


@dataclass(frozen=True, slots=True)
class Arrival:
    """A message as it came in, before anything is known about it but its header."""

    sender: str
    control_id: str
    sha256: str
    format: str  # hl7v2 | fhir
    channel: str  # mllp | http
    data: bytes


@dataclass(frozen=True, slots=True)
class Entry:
    """The journal's answer for one arrival."""

    id: int
    received: str  # ISO instant the message was first stored
    new: bool  # False: the same message was stored before (a re-send)
    done: bool  # the earlier copy is finished: ``reply`` is what was sent for it
    reply: bytes | None = None
    ack: str = ""  # MSA-1 (or HTTP status) of ``reply``
    reused_id: bool = False  # a *different* message came earlier with the same id
    owner: int = 0  # the process working on it (not done)


@dataclass(frozen=True, slots=True)
class Pending:
    """A stored message whose processing did not finish (the service stopped or died)."""

    id: int
    received: str
    format: str
    data: bytes
    owner: int = 0


@dataclass(frozen=True, slots=True)
class Completion:
    id: int
    outcome: str  # processed | skipped | rejected (the worst of a FHIR body's reports)
    ack: str  # MSA-1 sent, or the HTTP status for FHIR
    reply: bytes
    reports: int
    findings: tuple[str, ...]
    outputs: tuple[str, ...]
    notes: tuple[str, ...] = ()  # information-only issues kept here instead of a file


class Journal:
    def __init__(self, folder: Path, *, durable: bool = True) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / JOURNAL_NAME
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._durable = durable
        self._synced: bool | None = None
        self._sync(durable)
        self._db.execute("PRAGMA busy_timeout=2000")
        self._db.executescript(_SCHEMA)
        self._db.execute(
            "INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (SCHEMA_VERSION,)
        )

    def receive(
        self, arrivals: Sequence[Arrival], received: str, *, durable: bool = True, owner: int = 0
    ) -> list[Entry]:
        """Store every new arrival (one transaction), owned by ``owner``; a re-sent one gets
        its first entry.  ``durable``: sync this commit (when the journal is durable)."""
        self._sync(durable)
        entries: list[Entry] = []
        with self._transaction():
            for arrival in arrivals:
                entries.append(self._receive_one(arrival, received, owner))
        return entries

    def _receive_one(self, arrival: Arrival, received: str, owner: int) -> Entry:
        key = (arrival.sender, arrival.control_id, arrival.sha256)
        row = self._db.execute(
            "SELECT id, received, state, reply, ack, owner FROM messages"
            " WHERE sender = ? AND control_id = ? AND sha256 = ?",
            key,
        ).fetchone()
        if row is not None:
            return _entry(row)
        reused = bool(arrival.control_id) and (
            self._db.execute(
                "SELECT 1 FROM messages WHERE sender = ? AND control_id = ? LIMIT 1",
                key[:2],
            ).fetchone()
            is not None
        )
        cursor = self._db.execute(
            "INSERT INTO messages (sender, control_id, sha256, format, channel, received,"
            " data, state, owner) VALUES (?, ?, ?, ?, ?, ?, ?, 'received', ?)",
            (*key, arrival.format, arrival.channel, received, arrival.data, owner),
        )
        entry_id = int(cursor.lastrowid or 0)
        return Entry(entry_id, received, new=True, done=False, reused_id=reused, owner=owner)

    def entry(self, entry_id: int) -> Entry | None:
        """An entry as it is now (a re-send waiting for another process looks here)."""
        row = self._db.execute(
            "SELECT id, received, state, reply, ack, owner FROM messages WHERE id = ?",
            (entry_id,),
        ).fetchone()
        return None if row is None else _entry(row)

    def claim(self, entry_id: int, owner: int, previous: int) -> bool:
        """Take over a received entry from ``previous`` (a process that died)."""
        self._sync(False)
        with self._transaction():
            cursor = self._db.execute(
                "UPDATE messages SET owner = ? WHERE id = ? AND owner = ? AND state = 'received'",
                (owner, entry_id, previous),
            )
        return cursor.rowcount == 1

    def complete(self, completions: Sequence[Completion]) -> None:
        """Outcomes and replies of finished messages (one transaction, synced)."""
        self._sync(True)
        with self._transaction():
            self._db.executemany(
                "UPDATE messages SET state = 'done', outcome = ?, ack = ?, reply = ?,"
                " reports = ?, findings = ?, outputs = ?, notes = ? WHERE id = ?",
                [
                    (
                        c.outcome,
                        c.ack,
                        c.reply,
                        c.reports,
                        json.dumps(c.findings),
                        json.dumps(c.outputs),
                        json.dumps(c.notes),
                        c.id,
                    )
                    for c in completions
                ],
            )

    def pending(self, owners: Sequence[int] | None = None) -> list[Pending]:
        """Stored but unfinished messages, oldest first (processed again on start, or when
        the process that owned them died): all of them, or those of ``owners``."""
        query = "SELECT id, received, format, data, owner FROM messages WHERE state = 'received'"
        args: tuple[int, ...] = ()
        if owners is not None:
            query += f" AND owner IN ({','.join('?' * len(owners))})"
            args = tuple(owners)
        return [
            Pending(int(i), str(r), str(f), bytes(d), int(o))
            for i, r, f, d, o in self._db.execute(query + " ORDER BY id", args)
        ]

    def data(self, entry: int) -> bytes:
        """The stored message of an entry."""
        row = self._db.execute("SELECT data FROM messages WHERE id = ?", (entry,)).fetchone()
        return b"" if row is None else bytes(row[0])

    def counts(self) -> Counter[str]:
        """Messages by state/outcome: ``received`` and ``processed``/``skipped``/``rejected``."""
        return Counter(
            {
                str(o or s): int(n)
                for s, o, n in self._db.execute(
                    "SELECT state, outcome, COUNT(*) FROM messages GROUP BY state, outcome"
                )
            }
        )

    def close(self) -> None:
        self._db.close()

    def _sync(self, wanted: bool) -> None:
        synced = wanted and self._durable
        if synced != self._synced:
            self._db.execute(f"PRAGMA synchronous={'FULL' if synced else 'NORMAL'}")
            self._synced = synced

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)


def _entry(row: Any) -> Entry:
    entry_id, received, state, reply, ack, owner = row
    return Entry(
        int(entry_id),
        str(received),
        new=False,
        done=state == "done",
        reply=None if reply is None else bytes(reply),
        ack=str(ack),
        owner=int(owner),
    )


class _Transaction:
    """``BEGIN IMMEDIATE`` … ``COMMIT``, rolled back on any error."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind: object, value: object, traceback: object) -> None:
        if kind is None:
            self._db.execute("COMMIT")
        elif self._db.in_transaction:
            with suppress(sqlite3.Error):  # SQLite may have rolled back already (disk full)
                self._db.execute("ROLLBACK")

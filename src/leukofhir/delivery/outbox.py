"""The outbox: documents queued durably for a FHIR server *before* their delivery starts,
marked delivered only after the server's 2xx.  A crash in between leaves them pending: they
are sent again, which must change nothing on the server (every write conditional).

Order.  A document belongs to a ``patient`` (an ordering key) and has a ``seq`` (its output
order).  :meth:`SqliteOutbox.ready` hands out only the first undelivered document of each
patient, so one patient's documents reach the server strictly in order, while different
patients go in parallel.

Dead letters hold the line.  When a document is dead (refused for good, or retried for
longer than ``retry_for``), the same patient's later documents are **held**, not sent: a
later result must never overtake an earlier one on the server (a newer version replaced by
an older one re-sent after the fix, a Flag closed before it was opened).  Held documents are
counted (:class:`OutboxCounts` ``held``) so that the operator sees them; once the dead
letter is fixed and re-queued (:meth:`~SqliteOutbox.retry_dead`) or given up
(:meth:`~SqliteOutbox.abandon`: kept for the record, the line moves on), they follow.

Queueing the same ``key`` again is harmless: the same bytes change nothing, new bytes (a
message processed again after a mapping fix) replace the document and make it pending again,
whatever its state was.

Storage: SQLite, tables ``outbox``, ``outbox_data`` and ``outbox_meta`` only, so that the
outbox can live in the batch ledger or the service journal (same file, its own tables).
A document's bytes are in ``outbox_data``, apart from its row (so that marking a document
rewrites a small row and counting reads small rows), and are dropped once it is delivered
(the server has them; its output file too): the outbox holds the bytes of what is still to
deliver, not of everything ever delivered.  Schema 1 (bytes in the row) is upgraded in
place when opened.  :meth:`open` opens a
file of its own (WAL), the constructor takes a connection the caller opened with
``isolation_level=None``; :meth:`stage` queues inside a transaction the caller holds (the
documents then become durable with the caller's own rows).  One connection per thread.
Times are seconds since the epoch (they outlive the process).

Durability (``open(durable=True)``, the default): queueing is a synced commit, so a queued
document survives a power cut; the marks of answers (delivered, retry, dead) are written to
the WAL without a sync of their own (safe from a crash of the process; the next synced
commit makes them durable).  A power cut may thus forget the last marks, and those
documents are sent again: harmless, since every write is conditional.  A sync costs about
a millisecond here (several on a busy disk), as much as the rest of a delivery's own work.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Collection, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Self

import orjson

from leukofhir.delivery.deadletter import DeadLetterFolder, our_outcome
from leukofhir.pgsql import Database

__all__ = [
    "DeadLetter",
    "Document",
    "Outbox",
    "OutboxCounts",
    "Pending",
    "Record",
    "SqliteOutbox",
]

SCHEMA_VERSION = "2"
# The bytes apart: marking a document rewrites a small row, counting reads small rows.
_DATA_TABLE = "CREATE TABLE IF NOT EXISTS outbox_data (id INTEGER PRIMARY KEY, data BLOB NOT NULL)"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY,
    key TEXT NOT NULL UNIQUE,
    patient TEXT NOT NULL,
    seq INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    state TEXT NOT NULL,
    enqueued REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    retries INTEGER NOT NULL DEFAULT 0,
    first_attempt REAL,
    next_attempt REAL NOT NULL DEFAULT 0,
    last_status INTEGER,
    reason TEXT NOT NULL DEFAULT '',
    outcome BLOB,
    progress TEXT NOT NULL DEFAULT '{}',
    finished REAL
);
{data_table};
CREATE INDEX IF NOT EXISTS outbox_line ON outbox (patient, seq, id)
    WHERE state IN ('pending', 'dead');
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (next_attempt, seq, id) WHERE state = 'pending';
CREATE INDEX IF NOT EXISTS outbox_finished ON outbox (finished)
    WHERE state IN ('delivered', 'abandoned');
"""

_SCHEMA = _SCHEMA.replace("{data_table}", _DATA_TABLE)

# A document that comes after another pending or dead one of its patient.
_BEHIND = """EXISTS (SELECT 1 FROM outbox AS p WHERE p.patient = o.patient
    AND p.state IN ('pending', 'dead') AND (p.seq < o.seq OR (p.seq = o.seq AND p.id < o.id)))"""
_HELD = """EXISTS (SELECT 1 FROM outbox AS p WHERE p.patient = o.patient
    AND p.state IN ('pending', 'dead') AND p.state = 'dead'
    AND (p.seq < o.seq OR (p.seq = o.seq AND p.id < o.id)))"""  # the first state term: the index


@dataclass(frozen=True, slots=True)
class Document:
    key: str  # unique: an output name, a journal id and index ... (logged: no patient data)
    patient: str  # ordering key (a hash, never a plain identifier)
    seq: int  # output order
    data: bytes  # the transaction Bundle


@dataclass(frozen=True, slots=True)
class Pending:
    """A document handed out for an attempt."""

    id: int
    key: str
    patient: str
    seq: int
    data: bytes
    attempts: int
    first_attempt: float | None
    progress: Mapping[int, str]  # entries applied by earlier parts (split documents)


@dataclass(frozen=True, slots=True)
class Record:
    """Where a document stands."""

    id: int
    key: str
    state: str  # pending | delivered | dead | abandoned
    attempts: int
    retries: int
    last_status: int | None
    reason: str


@dataclass(frozen=True, slots=True)
class DeadLetter:
    id: int
    key: str
    status: int | None
    reason: str
    outcome: bytes | None  # the server's OperationOutcome, when it sent one
    attempts: int
    finished: float


@dataclass(frozen=True, slots=True)
class OutboxCounts:
    pending: int  # not delivered yet, all of them (includes scheduled and held)
    scheduled: int  # pending, waiting for a retry time
    held: int  # pending behind a dead letter of the same patient
    delivered: int
    dead: int
    abandoned: int
    retries: int  # retries ever scheduled
    oldest_pending_age: float | None  # seconds since the oldest pending one was queued

    def report(self) -> dict[str, int | float | None]:
        """As ``summary.json`` and ``deliver --status`` show them."""
        age = self.oldest_pending_age
        return {
            "delivered": self.delivered,
            "pending": self.pending,
            "scheduled_retry": self.scheduled,
            "held_behind_dead_letter": self.held,
            "dead": self.dead,
            "abandoned": self.abandoned,
            "retries": self.retries,
            "oldest_pending_seconds": None if age is None else round(age, 1),
        }


class Outbox(Protocol):
    """What the delivery loop needs of an outbox (:class:`SqliteOutbox` is the one)."""

    def ready(self, now: float, limit: int, busy: Collection[str] = ()) -> list[Pending]: ...

    def next_due(self, busy: Collection[str] = ()) -> float | None: ...

    def delivered(self, id: int, now: float, status: int | None) -> None: ...

    def retry(
        self,
        id: int,
        *,
        first_attempt: float,
        next_attempt: float,
        status: int | None,
        reason: str,
        progress: Mapping[int, str],
    ) -> None: ...

    def dead(
        self,
        id: int,
        now: float,
        *,
        status: int | None,
        reason: str,
        outcome: bytes | None,
        progress: Mapping[int, str],
    ) -> None: ...

    def stopped(self, id: int, status: int | None, reason: str) -> None: ...

    def save_progress(self, id: int, progress: Mapping[int, str]) -> None: ...


class SqliteOutbox:
    _free = ""  # next_due: the documents no other deliverer holds (one deliverer here)
    _db: Database

    def __init__(
        self,
        db: sqlite3.Connection,
        *,
        dead_letters: Path | None = None,
        durable: bool | None = None,
    ) -> None:
        """``durable`` None: the caller's connection keeps its own ``synchronous``; True:
        queueing (and re-queueing) commits are synced, answers' marks are not; False:
        nothing is synced (a crash of the process loses nothing, a power cut may)."""
        if db.isolation_level is not None:
            raise ValueError("the outbox needs a connection opened with isolation_level=None")
        self._db = db
        self._durable = durable
        self._synced: bool | None = None
        self._dead = DeadLetterFolder(dead_letters) if dead_letters is not None else None
        self._upgrade()
        db.executescript(_SCHEMA)
        db.execute(
            "INSERT OR REPLACE INTO outbox_meta VALUES ('schema_version', ?)", (SCHEMA_VERSION,)
        )

    def _upgrade(self) -> None:
        """Schema 1 kept the bytes in ``outbox.data``: every mark rewrote them and every
        count read them.  They move to ``outbox_data`` (delivered ones are not kept)."""
        columns = {str(row[1]) for row in self._db.execute("PRAGMA table_info(outbox)")}
        if "data" not in columns:
            return
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.execute(_DATA_TABLE)
            self._db.execute(
                "INSERT OR REPLACE INTO outbox_data SELECT id, data FROM outbox"
                " WHERE state != 'delivered'"
            )
            self._db.execute("ALTER TABLE outbox DROP COLUMN data")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    @classmethod
    def open(cls, path: Path, *, dead_letters: Path | None = None, durable: bool = True) -> Self:
        """An outbox in its own connection to ``path`` (WAL)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(path, isolation_level=None, timeout=10.0)
        db.execute("PRAGMA journal_mode=WAL")
        return cls(db, dead_letters=dead_letters, durable=durable)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ queueing

    def enqueue(self, documents: Iterable[Document], now: float) -> int:
        """Queue documents (one transaction); how many were new or changed."""
        with self._transaction(synced=True):
            return self.stage(documents, now)

    def stage(self, documents: Iterable[Document], now: float) -> int:
        """:meth:`enqueue` inside the caller's open transaction (no commit)."""
        changed = 0
        for document in documents:
            digest = hashlib.sha256(document.data).hexdigest()
            row = self._db.execute(
                "SELECT sha256, state FROM outbox WHERE key = ?", (document.key,)
            ).fetchone()
            values = (document.patient, document.seq, digest, now, document.key)
            if row is None:
                id = self._db.execute(
                    "INSERT INTO outbox (patient, seq, sha256, enqueued, key, state)"
                    " VALUES (?, ?, ?, ?, ?, 'pending') RETURNING id",
                    values,
                ).fetchone()[0]
            elif row[0] != digest:
                id = self._db.execute(
                    "UPDATE outbox SET patient = ?, seq = ?, sha256 = ?, enqueued = ?,"
                    " state = 'pending', attempts = 0, first_attempt = NULL, next_attempt = 0,"
                    " last_status = NULL, reason = '', outcome = NULL, progress = '{}',"
                    " finished = NULL WHERE key = ? RETURNING id",
                    values,
                ).fetchone()[0]
                if row[1] == "dead" and self._dead is not None:
                    self._dead.remove(document.key)
            else:
                continue
            self._db.execute(
                "INSERT INTO outbox_data (id, data) VALUES (?, ?)"
                " ON CONFLICT (id) DO UPDATE SET data = excluded.data",
                (id, document.data),
            )
            changed += 1
        return changed

    # ------------------------------------------------------------------ handing out

    def ready(self, now: float, limit: int, busy: Collection[str] = ()) -> list[Pending]:
        """Up to ``limit`` documents to send now: each the first undelivered one of its
        patient, due, and of a patient not in ``busy`` (one already in flight)."""
        exclude, args = _not_in(busy)
        rows = self._db.execute(
            "SELECT o.id, key, patient, seq, d.data, attempts, first_attempt, progress"
            " FROM outbox AS o JOIN outbox_data AS d ON d.id = o.id"
            f" WHERE state = 'pending' AND next_attempt <= ?{exclude}"
            f" AND NOT {_BEHIND} ORDER BY next_attempt, seq, o.id LIMIT ?",
            (now, *args, limit),
        )
        return [
            Pending(int(i), str(k), str(p), int(s), bytes(d), int(a), f, _progress(str(progress)))
            for i, k, p, s, d, a, f, progress in rows
        ]

    def next_due(self, busy: Collection[str] = ()) -> float | None:
        """The earliest time a document of a patient not in ``busy`` may be sent (a past
        time: now), or None when none is waiting (nothing pending, or all held)."""
        exclude, args = _not_in(busy)
        row = self._db.execute(
            f"SELECT MIN(next_attempt) FROM outbox AS o WHERE state = 'pending'{exclude}"
            f" AND NOT {_BEHIND}{self._free}",
            args,
        ).fetchone()
        return None if row[0] is None else float(row[0])

    # ------------------------------------------------------------------ answers

    def delivered(self, id: int, now: float, status: int | None) -> None:
        """Marked delivered; its bytes are not kept (the server has them)."""
        with self._transaction(synced=False):
            key = self._finish(id, "delivered", now, status, "", None)
            if key is not None:
                self._db.execute("DELETE FROM outbox_data WHERE id = ?", (id,))
        if key is not None and self._dead is not None:
            self._dead.remove(key)  # a dead letter of an earlier life, re-queued since

    def retry(
        self,
        id: int,
        *,
        first_attempt: float,
        next_attempt: float,
        status: int | None,
        reason: str,
        progress: Mapping[int, str],
    ) -> None:
        with self._transaction(synced=False):
            self._db.execute(
                "UPDATE outbox SET attempts = attempts + 1, retries = retries + 1,"
                " first_attempt = ?, next_attempt = ?, last_status = ?, reason = ?,"
                " progress = ? WHERE id = ? AND state = 'pending'",
                (first_attempt, next_attempt, status, reason, _dump(progress), id),
            )

    def dead(
        self,
        id: int,
        now: float,
        *,
        status: int | None,
        reason: str,
        outcome: bytes | None,
        progress: Mapping[int, str],
    ) -> None:
        """A dead letter: the files first (``OUT/dead``), then the row."""
        row = self._db.execute(
            "SELECT key, data FROM outbox JOIN outbox_data USING (id) WHERE id = ?", (id,)
        ).fetchone()
        if row is None:
            return
        if self._dead is not None:
            kept = outcome or our_outcome(reason, transient=status is None)
            self._dead.write(str(row[0]), bytes(row[1]), kept)
        with self._transaction(synced=False):
            self._finish(id, "dead", now, status, reason, outcome)
            self._db.execute("UPDATE outbox SET progress = ? WHERE id = ?", (_dump(progress), id))

    def stopped(self, id: int, status: int | None, reason: str) -> None:
        """Delivery stopped on this document's answer (401/403): it stays pending."""
        with self._transaction(synced=False):
            self._db.execute(
                "UPDATE outbox SET attempts = attempts + 1, last_status = ?, reason = ?"
                " WHERE id = ? AND state = 'pending'",
                (status, reason, id),
            )

    def save_progress(self, id: int, progress: Mapping[int, str]) -> None:
        with self._transaction(synced=False):
            self._db.execute("UPDATE outbox SET progress = ? WHERE id = ?", (_dump(progress), id))

    # ------------------------------------------------------------------ operator

    def retry_dead(self, ids: Collection[int] | None = None) -> int:
        """Queue dead letters again (all, or ``ids``), from a fresh start; how many."""
        where, args = ("", ()) if ids is None else _in(ids)
        with self._transaction(synced=True):
            keys = [
                str(k)
                for (k,) in self._db.execute(
                    f"SELECT key FROM outbox WHERE state = 'dead'{where}", args
                )
            ]
            self._db.execute(
                "UPDATE outbox SET state = 'pending', attempts = 0, first_attempt = NULL,"
                f" next_attempt = 0, finished = NULL WHERE state = 'dead'{where}",
                args,
            )
        if self._dead is not None:
            for key in keys:
                self._dead.remove(key)
        return len(keys)

    def abandon(self, ids: Collection[int]) -> int:
        """Give dead letters up: kept (row and files) as ``abandoned``; the documents
        their patients held go on."""
        where, args = _in(ids)
        with self._transaction(synced=True):
            cursor = self._db.execute(
                f"UPDATE outbox SET state = 'abandoned' WHERE state = 'dead'{where}", args
            )
        return int(cursor.rowcount)

    # ------------------------------------------------------------------ reading

    def counts(self, now: float) -> OutboxCounts:
        states = {"pending": 0, "delivered": 0, "dead": 0, "abandoned": 0}
        retries = 0
        for state, number, retried in self._db.execute(
            "SELECT state, COUNT(*), SUM(retries) FROM outbox GROUP BY state"
        ):
            states[str(state)] = int(number)
            retries += int(retried or 0)
        scheduled, oldest = self._db.execute(
            "SELECT COUNT(*) FILTER (WHERE next_attempt > ?), MIN(enqueued) FROM outbox"
            " WHERE state = 'pending'",
            (now,),
        ).fetchone()
        (held,) = self._db.execute(  # only the patients of dead letters are looked at
            "SELECT COUNT(*) FROM outbox AS o WHERE o.patient IN (SELECT patient FROM outbox"
            " WHERE state IN ('pending', 'dead') AND state = 'dead')"
            f" AND o.state IN ('pending', 'dead') AND o.state = 'pending' AND {_HELD}"
        ).fetchone()
        return OutboxCounts(
            pending=states["pending"],
            scheduled=int(scheduled),
            held=int(held),
            delivered=states["delivered"],
            dead=states["dead"],
            abandoned=states["abandoned"],
            retries=retries,
            oldest_pending_age=None if oldest is None else max(0.0, now - float(oldest)),
        )

    def set_meta(self, key: str, value: str | None) -> None:
        """Set (or, with None, remove) a value of ``outbox_meta`` (its own commit)."""
        with self._transaction(synced=False):
            if value is None:
                self._db.execute("DELETE FROM outbox_meta WHERE key = ?", (key,))
            else:
                self._db.execute(
                    "INSERT INTO outbox_meta VALUES (?, ?)"
                    " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    (key, value),
                )

    def prune(self, before: float, limit: int = 500) -> int:
        """Forget up to ``limit`` documents delivered (or abandoned) before ``before``
        (seconds since the epoch), oldest first; how many.  Pending and dead ones stay."""
        with self._transaction(synced=False):
            ids = [
                (int(i),)
                for (i,) in self._db.execute(
                    "SELECT id FROM outbox WHERE state IN ('delivered', 'abandoned')"
                    " AND finished < ? ORDER BY finished LIMIT ?",
                    (before, limit),
                )
            ]
            self._db.executemany("DELETE FROM outbox_data WHERE id = ?", ids)
            self._db.executemany("DELETE FROM outbox WHERE id = ?", ids)
        return len(ids)

    def meta(self, key: str) -> str | None:
        """A value of ``outbox_meta`` (e.g. the server the documents were queued for)."""
        row = self._db.execute("SELECT value FROM outbox_meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def record(self, key: str) -> Record | None:
        row = self._db.execute(
            "SELECT id, key, state, attempts, retries, last_status, reason FROM outbox"
            " WHERE key = ?",
            (key,),
        ).fetchone()
        return None if row is None else Record(*row)

    def dead_letters(self) -> list[DeadLetter]:
        return [
            DeadLetter(int(i), str(k), s, str(r), None if o is None else bytes(o), int(a), f)
            for i, k, s, r, o, a, f in self._db.execute(
                "SELECT id, key, last_status, reason, outcome, attempts, finished FROM outbox"
                " WHERE state = 'dead' ORDER BY id"
            )
        ]

    # ------------------------------------------------------------------ helpers

    def _finish(
        self,
        id: int,
        state: str,
        now: float,
        status: int | None,
        reason: str,
        outcome: bytes | None,
    ) -> str | None:
        row = self._db.execute(
            f"UPDATE outbox SET state = '{state}', attempts = attempts + 1, finished = ?,"
            " last_status = ?, reason = ?, outcome = ?, progress = '{}'"
            " WHERE id = ? AND state = 'pending' RETURNING key",
            (now, status, reason, outcome, id),
        ).fetchone()
        return None if row is None else str(row[0])

    @contextmanager
    def _transaction(self, *, synced: bool) -> Iterator[None]:
        """``synced``: this commit reaches the disk before it returns (when the outbox was
        opened ``durable``); the others are written to the WAL, safe from a crash of the
        process, and reach the disk with the next synced commit (or checkpoint)."""
        wanted = synced and self._durable
        if self._durable is not None and self._synced is not wanted:
            self._db.execute(f"PRAGMA synchronous={'FULL' if wanted else 'NORMAL'}")
            self._synced = wanted
        db = self._db
        assert isinstance(db, sqlite3.Connection)
        db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")


def _not_in(values: Collection[str]) -> tuple[str, tuple[str, ...]]:
    if not values:
        return "", ()
    return f" AND patient NOT IN ({','.join('?' * len(values))})", tuple(values)


def _in(ids: Collection[int]) -> tuple[str, tuple[int, ...]]:
    return f" AND id IN ({','.join('?' * len(ids)) or 'NULL'})", tuple(ids)


def _progress(text: str) -> dict[int, str]:
    return {int(index): str(ref) for index, ref in orjson.loads(text).items()}


def _dump(progress: Mapping[int, str]) -> str:
    return orjson.dumps({str(index): ref for index, ref in progress.items()}).decode()

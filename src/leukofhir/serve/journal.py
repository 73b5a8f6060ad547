"""The service's journal: one SQLite database (WAL mode) that records every received
message *before* it is acknowledged, then its outcome and outputs.

Table ``messages``: one row per distinct message, unique on (``sender``, ``control_id``,
``sha256``) where ``sender`` is MSH-3 and MSH-4 as sent (empty for FHIR over HTTP) and
``sha256`` is taken over the message with its segment ends normalised (a client that drops
the final ``\\r`` or sends ``\\n`` re-sends the *same* message).  ``state`` is

* ``received``: stored, not yet processed (a crash here is finished on restart);
* ``done``: processed; the row keeps the reply that was sent (the ACK, or the HTTP body
  for FHIR), which a re-send gets again without new output;
* ``failed``: processing raised an unexpected exception (a fault of ours, not of the
  message); the row keeps the reply that was sent (AR, or HTTP 500) and the ``reason``.
  A re-send gets that reply again: the fault is deterministic, so processing it again on
  every re-send or restart would only repeat it (a poison loop).  ``retry`` puts it back
  to ``received`` (after a fix), ``drop`` deletes it.

``owner`` is the process id of the service process working on a received row: a re-send
reaching another process waits for that one while it lives, and takes the message over
when it died; 0 is nobody's (a row put back by ``retry``), taken by the first that looks.
(On PostgreSQL, :mod:`leukofhir.serve.pgjournal`, it is a session id that stays alive
with the process's connection, because service processes are then on several hosts.)

Retention (``prune``) deletes ``done`` rows finished before a given instant, a few hundred
per transaction; it never touches a row in any other state (``received``, ``failed``): only
what is finished *and* settled goes.  The outbox (``outbox=True``: the Bundles queued for a
FHIR server) is pruned on its own, of delivered documents only (:mod:`.upkeep`).

With ``durable`` (the default) the commit of an outcome is synced (``synchronous=FULL``),
and so is a receipt when the caller asks (it is about to say "stored" before the outcome
exists); other receipts are written without a sync of their own, and the next synced
commit makes them durable too (the WAL is one sequential file).  An acknowledged message
survives a power cut, not only a crash of the process.

Each service process opens its own connection; SQLite serialises the writers.
:func:`open_journal` opens this file, or the same journal in PostgreSQL for a
``postgresql://`` URL (``serve --journal``).
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections import Counter
from collections.abc import Collection, Sequence
from contextlib import AbstractContextManager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from leukofhir.delivery.keys import facts_key
from leukofhir.delivery.outbox import Document, SqliteOutbox
from leukofhir.lifecycle.store import POSTGRES_SCHEMES, StateTable
from leukofhir.pgsql import Database
from leukofhir.serve.journal_schema import create_or_upgrade
from leukofhir.serve.states import Changes
from leukofhir.serve.work import Outbound

__all__ = [
    "Arrival",
    "Completion",
    "Delivery",
    "Entry",
    "Failed",
    "Journal",
    "Pending",
    "open_journal",
]

JOURNAL_NAME = "journal.sqlite"
RECEIVED, DONE, FAILED = "received", "done", "failed"
STOPPED_META = "delivery_stopped"  # outbox_meta: why delivery stopped (absent: it runs)


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
    state: str = RECEIVED  # received | done | failed
    reply: bytes | None = None  # finished: what was sent for it
    ack: str = ""  # MSA-1 (or HTTP status) of ``reply``
    reused_id: bool = False  # a *different* message came earlier with the same id
    owner: int = 0  # the process working on it (received)
    reason: str = ""  # failed: the fault

    @property
    def finished(self) -> bool:
        """Done or failed: ``reply`` is what was sent for it, and what a re-send gets."""
        return self.state != RECEIVED


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
    outcome: str  # processed | skipped | rejected (the worst of a FHIR body's reports) | failed
    ack: str  # MSA-1 sent, or the HTTP status for FHIR
    reply: bytes
    reports: int = 0
    findings: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()  # information-only issues kept here instead of a file
    reason: str = ""  # failed: the exception's type and where it was raised
    changes: Changes | None = None  # the patients' states it read and its new ones
    documents: tuple[Outbound, ...] = ()  # Bundles to queue for the FHIR server

    @property
    def state(self) -> str:
        return FAILED if self.outcome == FAILED else DONE


@dataclass(frozen=True, slots=True)
class Delivery:
    """Where a message's Bundles stand with the FHIR server (``--ack-after delivered``)."""

    documents: int
    delivered: int
    dead: int

    @property
    def done(self) -> bool:
        return self.delivered == self.documents


@dataclass(frozen=True, slots=True)
class Failed:
    """A failed message as ``journal --failed`` lists it: no content, no patient data."""

    id: int
    received: str
    finished: str
    sender: str  # MSH-3|MSH-4
    control_id: str  # MSH-10
    format: str
    channel: str
    reason: str


def open_journal(
    folder: Path, where: str = "", *, durable: bool = True, outbox: bool = False
) -> Journal:
    """The journal in ``OUT/journal.sqlite``, or (``where``: a ``postgresql://`` URL) in
    PostgreSQL; psycopg is imported only then.  Raises UsageError when PostgreSQL cannot
    be reached or set up (the message names the URL without its password)."""
    if where.startswith(POSTGRES_SCHEMES):
        from leukofhir.serve.pgjournal import PostgresJournal

        return PostgresJournal(where, durable=durable, outbox=outbox)
    return Journal(folder, durable=durable, outbox=outbox)


class Journal:
    _SYNC: ClassVar[dict[bool, str]] = {
        True: "PRAGMA synchronous=FULL",
        False: "PRAGMA synchronous=NORMAL",
    }
    _UNOWNED = ""  # claim: the condition that the previous owner is gone (pids: the caller's)
    owner: int  # what this process marks the messages it works on with
    outbox: SqliteOutbox | None
    _db: Database

    def __init__(self, folder: Path, *, durable: bool = True, outbox: bool = False) -> None:
        """``outbox``: queue the Bundles of finished messages for a FHIR server (tables
        ``outbox``, ``outbox_data``, ``outbox_meta``, :mod:`leukofhir.delivery.outbox`), with their
        outcome, in the same transaction."""
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / JOURNAL_NAME
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db = db
        self._db.execute("PRAGMA busy_timeout=2000")
        self._db.execute("PRAGMA journal_mode=WAL")
        self._durable = durable
        self._synced: bool | None = None
        self._sync(durable)
        create_or_upgrade(db, str(self.path))
        self.owner = os.getpid()
        self.states = StateTable(db)  # the patients' lifecycle states
        self.outbox = SqliteOutbox(db) if outbox else None

    def alive(self, owner: int) -> bool:
        """Is ``owner`` (a process of this machine) running?"""
        if owner <= 0:
            return False
        try:
            os.kill(owner, 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # pragma: no cover - exists, not ours
            return True
        return True

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
            f"SELECT {_ENTRY} FROM messages WHERE sender = ? AND control_id = ? AND sha256 = ?",
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
        (entry_id,) = self._db.execute(
            "INSERT INTO messages (sender, control_id, sha256, format, channel, received,"
            " data, state, owner) VALUES (?, ?, ?, ?, ?, ?, ?, 'received', ?) RETURNING id",
            (*key, arrival.format, arrival.channel, received, arrival.data, owner),
        ).fetchone()
        return Entry(int(entry_id), received, new=True, reused_id=reused, owner=owner)

    def entry(self, entry_id: int) -> Entry | None:
        """An entry as it is now (a re-send waiting for another process looks here)."""
        row = self._db.execute(
            f"SELECT {_ENTRY} FROM messages WHERE id = ?",
            (entry_id,),
        ).fetchone()
        return None if row is None else _entry(row)

    def claim(self, entry_id: int, owner: int, previous: int) -> bool:
        """Take over a received entry from ``previous`` (a process that died)."""
        self._sync(False)
        with self._transaction():
            cursor = self._db.execute(
                "UPDATE messages SET owner = ? WHERE id = ? AND owner = ? AND state = 'received'"
                + self._UNOWNED,
                (owner, entry_id, previous),
            )
        return bool(cursor.rowcount == 1)

    def complete(self, completions: Sequence[Completion], finished: str) -> list[int]:
        """Outcomes and replies of finished messages, done or failed at the ISO instant
        ``finished``, with the patients' new states (one transaction, synced).  A message
        whose patients' states changed since it read them (another service process settled
        a message of the same patient) is left out: the ids of those, to settle again."""
        self._sync(True)
        stale: list[int] = []
        with self._transaction():
            self._hold([p for c in completions if c.changes is not None for p in c.changes.read])
            done = []
            for c in completions:
                if c.changes is not None and c.changes.states:
                    if not self.states.unchanged(c.changes.read):
                        stale.append(c.id)
                        continue
                    self.states.save(c.changes.states)
                done.append(c)
            self._queue([c for c in done if c.documents and c.state == DONE])
            self._db.executemany(
                "UPDATE messages SET state = ?, outcome = ?, ack = ?, reply = ?, reports = ?,"
                " findings = ?, outputs = ?, notes = ?, reason = ?, finished = ?"
                " WHERE id = ? AND state = 'received'",
                [
                    (
                        c.state,
                        c.outcome,
                        c.ack,
                        c.reply,
                        c.reports,
                        json.dumps(c.findings),
                        json.dumps(c.outputs),
                        json.dumps(c.notes),
                        c.reason,
                        finished,
                        c.id,
                    )
                    for c in done
                ],
            )
        return stale

    def _hold(self, patients: Collection[str]) -> None:
        """Serialise the commits of ``patients`` until the transaction ends (SQLite: its
        one writer at a time does)."""

    def _queue(self, completions: Sequence[Completion]) -> None:
        """The Bundles of ``completions`` into the outbox (in the open transaction): key
        ``j<entry>/<output name>``, ordering key a hash of the lifecycle's patient (a Bundle
        without one: its own line), ``seq`` in commit order (the lifecycle serialises one
        patient's commits, so that is the order its states were settled in)."""
        if self.outbox is None or not completions:
            return
        (last,) = self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM outbox").fetchone()
        documents = []
        for c in completions:
            for bundle in c.documents:
                last += 1
                key = f"j{c.id}/{bundle.name}"
                patient = facts_key(bundle.patient) if bundle.patient else key
                documents.append(Document(key, patient, int(last), bundle.data))
        self.outbox.stage(documents, time.time())

    def delivery_problem(self) -> str:
        """Why delivery to the FHIR server stopped ("" when it did not)."""
        return (self.outbox.meta(STOPPED_META) or "") if self.outbox is not None else ""

    def delivery(self, entry_id: int) -> Delivery:
        """How far the Bundles of a message got (none queued: 0 of 0)."""
        prefix = f"j{entry_id}/"
        counts = dict.fromkeys(("pending", "delivered", "dead", "abandoned"), 0)
        if self.outbox is not None:
            for state, number in self._db.execute(
                "SELECT state, COUNT(*) FROM outbox WHERE key >= ? AND key < ? GROUP BY state",
                (prefix, prefix[:-1] + "0"),  # "0" follows "/": every key with the prefix
            ):
                counts[str(state)] = int(number)
        return Delivery(sum(counts.values()), counts["delivered"], counts["dead"])

    def pending(self, owners: Sequence[int] | None = None) -> list[Pending]:
        """Stored but unfinished messages, oldest first (processed again on start, or when
        the process that owned them died): all of them, or those of ``owners``."""
        owned, args = self._owned_by(owners)
        query = "SELECT id, received, format, data, owner FROM messages WHERE state = 'received'"
        return [
            Pending(int(i), str(r), str(f), bytes(d), int(o))
            for i, r, f, d, o in self._db.execute(query + owned + " ORDER BY id", args)
        ]

    def _owned_by(self, owners: Sequence[int] | None) -> tuple[str, tuple[int, ...]]:
        if owners is None:
            return "", ()
        return f" AND owner IN ({','.join('?' * len(owners))})", tuple(owners)

    def failed(self) -> list[Failed]:
        """The failed messages, oldest first."""
        return [
            Failed(int(i), str(r), str(f), str(s), str(c), str(fo), str(ch), str(why))
            for i, r, f, s, c, fo, ch, why in self._db.execute(
                "SELECT id, received, finished, sender, control_id, format, channel, reason"
                " FROM messages WHERE state = 'failed' ORDER BY id"
            )
        ]

    def retry(self, entry_id: int) -> bool:
        """Put a failed message back to ``received``, nobody's (owner 0): the next start
        processes it, so does a running service's upkeep or a re-send.  False when
        ``entry_id`` is not a failed message."""
        self._sync(True)
        with self._transaction():
            cursor = self._db.execute(
                "UPDATE messages SET state = 'received', owner = 0, outcome = '', ack = '',"
                " reply = NULL, reason = '', finished = '' WHERE id = ? AND state = 'failed'",
                (entry_id,),
            )
        return bool(cursor.rowcount == 1)

    def drop(self, entry_id: int) -> bool:
        """Delete a failed message (a re-send is then a new message).  False when
        ``entry_id`` is not a failed message."""
        self._sync(True)
        with self._transaction():
            cursor = self._db.execute(
                "DELETE FROM messages WHERE id = ? AND state = 'failed'", (entry_id,)
            )
        return bool(cursor.rowcount == 1)

    def prune(self, before: str, limit: int = 500) -> int:
        """Delete up to ``limit`` ``done`` rows finished before the ISO instant ``before``,
        oldest first (one short transaction: the writer lock is held for a few
        milliseconds); returns how many.  Their pages are reused by later rows."""
        self._sync(False)  # a prune lost in a power cut is done again by the next one
        with self._transaction():
            cursor = self._db.execute(
                "DELETE FROM messages WHERE id IN (SELECT id FROM messages"
                " WHERE state = 'done' AND finished < ? ORDER BY finished LIMIT ?)",
                (before, limit),
            )
        return int(cursor.rowcount)

    def data(self, entry: int) -> bytes:
        """The stored message of an entry."""
        row = self._db.execute("SELECT data FROM messages WHERE id = ?", (entry,)).fetchone()
        return b"" if row is None else bytes(row[0])

    def counts(self) -> Counter[str]:
        """Messages by state/outcome: ``received``, ``processed``/``skipped``/``rejected``
        (done) and ``failed``."""
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
            self._db.execute(self._SYNC[synced])
            self._synced = synced

    def _transaction(self) -> AbstractContextManager[None]:
        assert isinstance(self._db, sqlite3.Connection)
        return _Transaction(self._db)


_ENTRY = "id, received, state, reply, ack, owner, reason"


def _entry(row: Any) -> Entry:
    entry_id, received, state, reply, ack, owner, reason = row
    return Entry(
        int(entry_id),
        str(received),
        new=False,
        state=str(state),
        reply=None if reply is None else bytes(reply),
        ack=str(ack),
        owner=int(owner),
        reason=str(reason),
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

"""The ledger: one SQLite database in OUT (WAL mode), written by the batch's parent only.

Tables::

    meta(key, value)       schema version; ``session_now``: the processing time of the
                           pass under way (see :mod:`leukofhir.batch.runner`)
    files(source, size, mtime_ns, state, messages, error, moved)
                           one row per input file (``source`` is its path relative to IN);
                           state ``done`` (every message recorded), ``unreadable`` or
                           ``vanished`` (tried again on the next pass); ``moved``: 1 when
                           the batch moves the file out of IN (``--move-processed`` /
                           ``--move-rejected``; set in the transaction before the move),
                           0 when it stays, NULL for a row written by version 2 (which did
                           not record moves); added by schema version 3
    messages(source, offset, idx, sha256, control_id, outcome, reports, findings,
             reason, outputs, recorded, notes)
                           one row per message; unique on (source, offset, sha256);
                           ``notes``: a JSON list of the texts of a processed message's
                           information-only issues, written here instead of a file
                           (:mod:`leukofhir.batch.work`); added by schema version 2
    stale(output)          outputs of rows replaced or removed, to delete once committed
    lifecycle_state(patient, state)
                           each patient's lifecycle state (standing Flags, report versions;
                           :mod:`leukofhir.lifecycle.store`), written in the same transaction
                           as the rows of the messages that changed it

Invariant: a message's row is committed only after all of its outputs are in place, and a
file's ``done`` row in the same transaction as its messages' rows.  A file that changed
replaces its rows: the rows of messages no longer in it are deleted, and the outputs no row
keeps any more (theirs, and those a retried message no longer has) are listed in ``stale``
in the same transaction, deleted after the commit, then struck off; a crash in between
leaves the list, and the next commit (or the next run) finishes it.  A crash therefore
leaves outputs the ledger does not know yet (re-made byte for byte by the re-run) but never
a row without its outputs.  Rows are committed in batches (every ``commit_rows`` rows or
``commit_seconds``), which bounds the work a crash can cost.  A file that left IN (deleted,
renamed: :mod:`leukofhir.batch.gone`) is removed the same way: its outputs listed in
``stale``, its rows and its file row deleted, in one transaction (:meth:`Ledger.remove_file`).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

from leukofhir.lifecycle.state import PatientState
from leukofhir.lifecycle.store import StateTable

__all__ = ["REASON_MAX", "FileState", "Ledger", "MessageRow"]

SCHEMA_VERSION = "3"
LEDGER_NAME = "ledger.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS files (
    source TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    state TEXT NOT NULL,
    messages INTEGER NOT NULL DEFAULT 0,
    error TEXT NOT NULL DEFAULT '',
    moved INTEGER
);
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY,
    source TEXT NOT NULL,
    offset INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    control_id TEXT NOT NULL,
    outcome TEXT NOT NULL,
    reports INTEGER NOT NULL,
    findings TEXT NOT NULL,
    reason TEXT NOT NULL,
    outputs TEXT NOT NULL,
    recorded TEXT NOT NULL,
    notes TEXT NOT NULL DEFAULT '[]',
    UNIQUE (source, offset, sha256)
);
CREATE INDEX IF NOT EXISTS messages_outcome ON messages (outcome);
CREATE TABLE IF NOT EXISTS stale (output TEXT PRIMARY KEY);
"""


_NOTES = json.JSONEncoder(ensure_ascii=False).encode  # notes keep their letters


def _json(items: tuple[str, ...]) -> str:
    return json.dumps(items) if items else "[]"


@dataclass(frozen=True, slots=True)
class MessageRow:
    """What one message became (made by a worker, recorded by the parent)."""

    offset: int
    index: int
    sha256: str
    control_id: str
    outcome: str  # processed | skipped | rejected
    reports: int
    findings: tuple[str, ...]  # "leukopenia G2", "eosinophilia" ...
    reason: str  # rejected/skipped: the main issue's text
    outputs: tuple[str, ...]  # relative names under OUT
    notes: tuple[str, ...] = ()  # processed: information-only issues (no outcome file)


REASON_MAX = 300  # characters of a rejected or skipped message's reason kept in its row


@dataclass(frozen=True, slots=True)
class FileState:
    size: int
    mtime_ns: int
    state: str


class Ledger:
    """The batch's memory of what it did.  Not thread-safe; one writer process."""

    def __init__(
        self,
        out: Path,
        *,
        durable: bool = False,
        commit_rows: int = 2000,
        commit_seconds: float = 1.0,
        on_commit: Callable[[list[str]], None] | None = None,
    ) -> None:
        self.path = out / LEDGER_NAME
        self._db = sqlite3.connect(self.path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
        self._db.executescript(_SCHEMA)
        self._migrate()
        self._states = StateTable(self._db)
        self._commit_rows = commit_rows
        self._commit_seconds = commit_seconds
        self._pending = 0
        self._since = time.monotonic()
        self._in_transaction = False
        self._on_commit = on_commit
        # states settled in the current transaction, written when it commits: a patient
        # settled several times in one commit is encoded and written once
        self._unsaved: dict[str, PatientState] = {}

    def _migrate(self) -> None:
        """Bring a ledger of an older version up to this one (in place, idempotent)."""
        columns = {str(row[1]) for row in self._db.execute("PRAGMA table_info(messages)")}
        if "notes" not in columns:  # version 1: notes were .outcome.json files
            self._db.execute("ALTER TABLE messages ADD COLUMN notes TEXT NOT NULL DEFAULT '[]'")
        columns = {str(row[1]) for row in self._db.execute("PRAGMA table_info(files)")}
        if "moved" not in columns:  # versions 1 and 2 did not record moves: NULL, unknown
            self._db.execute("ALTER TABLE files ADD COLUMN moved INTEGER")
        self._db.execute(
            "INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (SCHEMA_VERSION,)
        )

    # -- meta ---------------------------------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str | None) -> None:
        self.flush()
        if value is None:
            self._db.execute("DELETE FROM meta WHERE key = ?", (key,))
        else:
            self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    # -- reading ------------------------------------------------------------------------
    def file_state(self, source: str) -> FileState | None:
        row = self._db.execute(
            "SELECT size, mtime_ns, state FROM files WHERE source = ?", (source,)
        ).fetchone()
        return None if row is None else FileState(int(row[0]), int(row[1]), str(row[2]))

    def done_keys(self, source: str, *, retry_rejected: bool) -> frozenset[tuple[int, str]]:
        """(offset, sha256) of the messages of ``source`` that need no work."""
        query = "SELECT offset, sha256 FROM messages WHERE source = ?"
        if retry_rejected:
            query += " AND outcome != 'rejected'"
        return frozenset((int(o), str(h)) for o, h in self._db.execute(query, (source,)))

    def has_rejected(self, source: str) -> bool:
        row = self._db.execute(
            "SELECT 1 FROM messages WHERE source = ? AND outcome = 'rejected' LIMIT 1",
            (source,),
        ).fetchone()
        return row is not None

    def counts(self) -> Counter[str]:
        return Counter(
            {
                str(o): int(n)
                for o, n in self._db.execute(
                    "SELECT outcome, COUNT(*) FROM messages GROUP BY outcome"
                )
            }
        )

    def file_counts(self) -> Counter[str]:
        return Counter(
            {
                str(s): int(n)
                for s, n in self._db.execute("SELECT state, COUNT(*) FROM files GROUP BY state")
            }
        )

    def findings(self) -> Counter[str]:
        return Counter(
            {
                str(v): int(n)
                for v, n in self._db.execute(
                    "SELECT j.value, COUNT(*) FROM messages, json_each(messages.findings) AS j"
                    " GROUP BY j.value"
                )
            }
        )

    def top_reasons(self, limit: int = 10) -> list[tuple[str, int]]:
        return [
            (str(r), int(n))
            for r, n in self._db.execute(
                "SELECT reason, COUNT(*) AS n FROM messages WHERE outcome = 'rejected'"
                " GROUP BY reason ORDER BY n DESC, reason LIMIT ?",
                (limit,),
            )
        ]

    def noted(self) -> tuple[int, int]:
        """(messages with notes in the ledger, notes in all)."""
        row = self._db.execute(
            "SELECT COUNT(*), COALESCE(SUM(json_array_length(notes)), 0) FROM messages"
            " WHERE notes != '[]'"
        ).fetchone()
        return int(row[0]), int(row[1])

    def sources(self, *, unknown_moved: bool, page: int = 1000) -> Iterator[str]:
        """The files that mirror IN (not moved out by the batch; with ``unknown_moved``
        also those of version 2, whose moves are unknown), in SQLite's order of TEXT
        (memcmp on UTF-8).  Read a page at a time after the last name given, so the
        caller may remove files meanwhile."""
        last = ""
        while True:
            names = [
                str(source)
                for (source,) in self._db.execute(
                    "SELECT source FROM files WHERE source > ?"
                    " AND (moved = 0 OR (moved IS NULL AND ?)) ORDER BY source LIMIT ?",
                    (last, unknown_moved, page),
                )
            ]
            yield from names
            if len(names) < page:
                return
            last = names[-1]

    def total_reports(self) -> int:
        row = self._db.execute("SELECT COALESCE(SUM(reports), 0) FROM messages").fetchone()
        return int(row[0])

    def rows(self, outcome: str | None = None) -> Iterator[sqlite3.Row]:
        """Message rows in (source, offset) order, streamed."""
        cursor = self._db.cursor()
        cursor.row_factory = sqlite3.Row
        query = "SELECT * FROM messages"
        args: tuple[str, ...] = ()
        if outcome is not None:
            query += " WHERE outcome = ?"
            args = (outcome,)
        yield from cursor.execute(query + " ORDER BY source, offset, sha256", args)

    # -- writing ------------------------------------------------------------------------
    def record_file(
        self,
        source: str,
        size: int,
        mtime_ns: int,
        rows: Iterable[MessageRow],
        *,
        recorded: str,
        state: str = "done",
        error: str = "",
        replacing: bool = False,
        present: frozenset[tuple[int, str]] | None = None,
        moved: bool = False,
    ) -> None:
        """A file's messages and its state, in the current (batched) transaction.

        ``replacing``: the file was seen before, so ``rows`` may replace older rows.  With
        ``present`` (the (offset, sha256) of the messages still in the file that needed no
        work) the file is known whole: its older rows that are neither in ``rows`` nor in
        ``present`` are of messages that left it, and are deleted with their outputs."""
        self._begin()
        rows = list(rows)
        if replacing:
            self._replace(source, rows, present)
        batch = [
            (
                source,
                r.offset,
                r.index,
                r.sha256,
                r.control_id,
                r.outcome,
                r.reports,
                _json(r.findings),
                r.reason,
                _json(r.outputs),
                recorded,
                _NOTES(r.notes) if r.notes else "[]",
            )
            for r in rows
        ]
        # a retried rejected message replaces its row (same source, offset and bytes)
        self._db.executemany(
            "INSERT OR REPLACE INTO messages (source, offset, idx, sha256, control_id,"
            " outcome, reports, findings, reason, outputs, recorded, notes)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            batch,
        )
        self._db.execute(
            "INSERT OR REPLACE INTO files (source, size, mtime_ns, state, messages, error,"
            " moved) VALUES (?, ?, ?, ?, (SELECT COUNT(*) FROM messages WHERE source = ?), ?, ?)",
            (source, size, mtime_ns, state, source, error, int(moved)),
        )
        self._written(len(batch) + 1)

    def remove_file(self, source: str) -> int:
        """A file that left IN: its outputs to ``stale``, its message rows and its file row
        deleted, in the current (batched) transaction.  How many messages it had."""
        self._begin()
        stale = [
            (output,)
            for (outputs,) in self._db.execute(
                "SELECT outputs FROM messages WHERE source = ?", (source,)
            )
            for output in json.loads(outputs)
        ]
        self._db.executemany("INSERT OR IGNORE INTO stale VALUES (?)", stale)
        removed = self._db.execute("DELETE FROM messages WHERE source = ?", (source,)).rowcount
        self._db.execute("DELETE FROM files WHERE source = ?", (source,))
        self._written(removed + 1)
        return int(removed)

    def mark_moved(self, source: str, moved: bool = True) -> None:
        """Whether the batch moves ``source`` out of IN (then it is not removed when gone);
        in the current transaction, so that the mark is committed before the move."""
        self._begin()
        self._db.execute("UPDATE files SET moved = ? WHERE source = ?", (int(moved), source))
        self._pending += 1

    def _written(self, rows: int) -> None:
        self._pending += rows
        if (
            self._pending >= self._commit_rows
            or time.monotonic() - self._since >= self._commit_seconds
        ):
            self.flush()

    def flush(self) -> None:
        """Commit what is pending, then tell ``on_commit`` which old outputs are stale (it
        deletes them) and strike them off."""
        if self._in_transaction:
            self._write_states()
            self._db.execute("COMMIT")
            self._in_transaction = False
        self._pending = 0
        self._since = time.monotonic()
        stale = [str(o) for (o,) in self._db.execute("SELECT output FROM stale")]
        if self._on_commit is not None:
            self._on_commit(stale)
        if stale:
            self._db.execute("DELETE FROM stale")

    def rollback(self) -> None:
        """Drop what is pending (after an error that stops the batch)."""
        self._unsaved.clear()
        if self._in_transaction:
            with suppress(sqlite3.Error):  # SQLite may have rolled back already (disk full)
                self._db.execute("ROLLBACK")
            self._in_transaction = False

    def _replace(
        self, source: str, rows: list[MessageRow], present: frozenset[tuple[int, str]] | None
    ) -> None:
        """Before ``rows`` of a file seen before are written: the outputs that older rows
        had and no row keeps go to ``stale``; rows of messages gone from the file go."""
        new = {(r.offset, r.sha256): r for r in rows}
        kept_outputs = {o for r in rows for o in r.outputs}
        stale: list[str] = []
        gone: list[tuple[int, str]] = []
        for offset, sha, outputs in self._db.execute(
            "SELECT offset, sha256, outputs FROM messages WHERE source = ?", (source,)
        ).fetchall():
            key = (int(offset), str(sha))
            if key in new:  # replaced (a retried rejected message): what it no longer has
                stale.extend(o for o in json.loads(outputs) if o not in kept_outputs)
            elif present is not None and key not in present:  # the message left the file
                gone.append(key)
                stale.extend(o for o in json.loads(outputs) if o not in kept_outputs)
        self._db.executemany(
            "DELETE FROM messages WHERE source = ? AND offset = ? AND sha256 = ?",
            [(source, offset, sha) for offset, sha in gone],
        )
        self._db.executemany("INSERT OR IGNORE INTO stale VALUES (?)", [(o,) for o in stale])

    def load_state(self, patient: str) -> PatientState:
        """A patient's lifecycle state, as of the current transaction."""
        state = self._unsaved.get(patient)
        return self._states.load(patient) if state is None else state

    def save_states(self, states: Mapping[str, PatientState]) -> None:
        """Patients' new lifecycle states, in the current (batched) transaction: written
        to the table when it commits (:meth:`flush`)."""
        if states:
            self._begin()
            self._unsaved.update(states)
            self._pending += len(states)

    def _write_states(self) -> None:
        if self._unsaved:
            self._states.save(self._unsaved)
            self._unsaved.clear()

    def state_size(self) -> tuple[int, int]:
        """(patients, bytes of their stored states), the current transaction's included."""
        if self._in_transaction:
            self._write_states()
        return self._states.size()

    @property
    def connection(self) -> sqlite3.Connection:
        """For the tables of a companion that commit with the rows (the delivery outbox:
        :mod:`leukofhir.batch.outbound`); write to them only after :meth:`begin`."""
        return self._db

    def begin(self) -> None:
        """Make sure the current (batched) transaction is open."""
        self._begin()
        self._pending += 1

    def close(self) -> None:
        self._db.close()

    def _begin(self) -> None:
        if not self._in_transaction:
            self._db.execute("BEGIN IMMEDIATE")
            self._in_transaction = True
            self._since = time.monotonic()

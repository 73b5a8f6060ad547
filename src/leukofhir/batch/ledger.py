"""The ledger: one SQLite database in OUT (WAL mode), written by the batch's parent only.

Tables::

    meta(key, value)       schema version; ``session_now``: the processing time of the
                           pass under way (see :mod:`leukofhir.batch.runner`)
    files(source, size, mtime_ns, state, messages, error)
                           one row per input file (``source`` is its path relative to IN);
                           state ``done`` (every message recorded), ``unreadable`` or
                           ``vanished`` (tried again on the next pass)
    messages(source, offset, idx, sha256, control_id, outcome, reports, findings,
             reason, outputs, recorded, notes)
                           one row per message; unique on (source, offset, sha256);
                           ``notes``: a JSON list of the texts of a processed message's
                           information-only issues, written here instead of a file
                           (:mod:`leukofhir.batch.work`); added by schema version 2
    stale(output)          outputs of rows replaced or removed, to delete once committed

Invariant: a message's row is committed only after all of its outputs are in place, and a
file's ``done`` row in the same transaction as its messages' rows.  A file that changed
replaces its rows: the rows of messages no longer in it are deleted, and the outputs no row
keeps any more (theirs, and those a retried message no longer has) are listed in ``stale``
in the same transaction, deleted after the commit, then struck off; a crash in between
leaves the list, and the next commit (or the next run) finishes it.  A crash therefore
leaves outputs the ledger does not know yet (re-made byte for byte by the re-run) but never
a row without its outputs.  Rows are committed in batches (every ``commit_rows`` rows or
``commit_seconds``), which bounds the work a crash can cost.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

__all__ = ["FileState", "Ledger", "MessageRow"]

SCHEMA_VERSION = "2"
LEDGER_NAME = "ledger.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS files (
    source TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    state TEXT NOT NULL,
    messages INTEGER NOT NULL DEFAULT 0,
    error TEXT NOT NULL DEFAULT ''
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
        self._commit_rows = commit_rows
        self._commit_seconds = commit_seconds
        self._pending = 0
        self._since = time.monotonic()
        self._in_transaction = False
        self._on_commit = on_commit

    def _migrate(self) -> None:
        """Bring a ledger of an older version up to this one (in place, idempotent)."""
        columns = {str(row[1]) for row in self._db.execute("PRAGMA table_info(messages)")}
        if "notes" not in columns:  # version 1: notes were .outcome.json files
            self._db.execute("ALTER TABLE messages ADD COLUMN notes TEXT NOT NULL DEFAULT '[]'")
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
                json.dumps(r.findings),
                r.reason,
                json.dumps(r.outputs),
                recorded,
                json.dumps(r.notes, ensure_ascii=False),
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
            "INSERT OR REPLACE INTO files (source, size, mtime_ns, state, messages, error)"
            " VALUES (?, ?, ?, ?, (SELECT COUNT(*) FROM messages WHERE source = ?), ?)",
            (source, size, mtime_ns, state, source, error),
        )
        self._pending += len(batch) + 1
        if (
            self._pending >= self._commit_rows
            or time.monotonic() - self._since >= self._commit_seconds
        ):
            self.flush()

    def flush(self) -> None:
        """Commit what is pending, then tell ``on_commit`` which old outputs are stale (it
        deletes them) and strike them off."""
        if self._in_transaction:
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

    def close(self) -> None:
        self._db.close()

    def _begin(self) -> None:
        if not self._in_transaction:
            self._db.execute("BEGIN IMMEDIATE")
            self._in_transaction = True
            self._since = time.monotonic()

"""The journal's tables, and the upgrade of an older journal in place.

Schema 2 (this version) adds to schema 1:

* state ``failed``: processing the message raised an unexpected exception; ``reason``
  says which and where (never the exception's text, which may quote the message);
* ``finished``: the instant a message became ``done`` or ``failed`` (retention counts
  from it; an upgraded ``done`` row gets its ``received`` instant);
* partial indexes for the failed rows (the ``journal --failed`` listing) and for the
  done rows by ``finished`` (retention).

A journal of schema 1 is upgraded when it is opened (one transaction: two columns,
their values, the indexes, the version); one of a newer schema is refused.
"""

from __future__ import annotations

import sqlite3

from leukofhir.errors import UsageError

__all__ = ["SCHEMA_VERSION", "create_or_upgrade"]

SCHEMA_VERSION = 2

_TABLES = """
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
    reason TEXT NOT NULL DEFAULT '',
    finished TEXT NOT NULL DEFAULT '',
    UNIQUE (sender, control_id, sha256)
);
"""

_INDEXES = """
CREATE INDEX IF NOT EXISTS messages_received ON messages (state) WHERE state = 'received';
CREATE INDEX IF NOT EXISTS messages_failed ON messages (id) WHERE state = 'failed';
CREATE INDEX IF NOT EXISTS messages_done ON messages (finished) WHERE state = 'done';
"""

_ADDED = {  # schema 1 → 2: new columns, and their values for the rows already there
    "reason": "TEXT NOT NULL DEFAULT ''",
    "finished": "TEXT NOT NULL DEFAULT ''",
}
_FILL = "UPDATE messages SET finished = received WHERE state = 'done' AND finished = ''"


def create_or_upgrade(db: sqlite3.Connection, where: str) -> None:
    """Create the tables in a new journal, upgrade a schema-1 one; ``where`` names the file
    in the error for a journal written by a newer leukofhir.  A journal already at this
    schema is only read (no write lock taken)."""
    if _version(db) == SCHEMA_VERSION:
        return
    db.execute("BEGIN IMMEDIATE")
    try:
        version = _version(db)  # again: another process may have done it meanwhile
        if version > SCHEMA_VERSION:
            raise UsageError(
                f"{where} has journal schema {version}; this leukofhir reads schema"
                f" {SCHEMA_VERSION} and older: use a newer leukofhir"
            )
        if version < SCHEMA_VERSION:
            for statement in _statements(_TABLES):
                db.execute(statement)
            columns = {str(c[1]) for c in db.execute("PRAGMA table_info(messages)")}
            for name, declaration in _ADDED.items():
                if name not in columns:  # a journal of schema 1
                    db.execute(f"ALTER TABLE messages ADD COLUMN {name} {declaration}")
            db.execute(_FILL)
            for statement in _statements(_INDEXES):
                db.execute(statement)
            db.execute(
                "INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
            )
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise


def _version(db: sqlite3.Connection) -> int:
    """The journal's schema version; 0 for a new (empty) file."""
    if db.execute("SELECT 1 FROM sqlite_master WHERE name = 'meta'").fetchone() is None:
        return 0
    row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    return 0 if row is None else int(row[0])


def _statements(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]

"""The service's journal in PostgreSQL (``serve --journal postgresql://...``), shared by
service processes on several hosts: the same tables, statements and semantics as the SQLite
journal (:mod:`.journal`), run by a :class:`leukofhir.pgsql.Session`.  What differs:

* **Owners** are session ids, alive while their connection lives (:mod:`leukofhir.pgsql`),
  not process ids: a re-send reaching another host waits while the owner's session lives
  and takes the message over (one ``UPDATE`` wins) once it is gone.  :meth:`pending` lists
  the *orphans*: received messages whose owner's session is gone, of any host (the
  ``owners`` a caller names are process ids, meaningless here); upkeep, in the first
  process of every host, finishes them within :data:`~leukofhir.serve.upkeep.UPKEEP_EVERY`.
* **Per-patient serialisation**: the optimistic check of :mod:`.states` (a message commits
  only if its patients' states are the bytes it read), made exact across hosts by
  transaction-level advisory locks on those patients (``pg_advisory_xact_lock``, in key
  order: no deadlock), taken at the start of the commit and released with it.  Two
  commits of one patient follow each other; the second sees the first's state, finds it
  changed, and its message is settled again.  The locks are held for one commit (a few
  round trips), never while a message is processed.
* **Durability**: ``synchronous_commit`` on for an outcome (and a receipt the caller
  syncs), off for other receipts (``SET LOCAL``, per transaction), as ``PRAGMA
  synchronous`` is used on SQLite.  Transactions run in pipeline mode: a commit of an
  outcome takes about four round trips, whatever the number of its statements.
* The patients' states are the table ``lifecycle_state`` of
  :class:`leukofhir.lifecycle.pgstore.PostgresStore` (``replay --state`` on the same
  database sees them); the outbox is :class:`leukofhir.delivery.pgoutbox.PostgresOutbox`.

Schema: part ``journal`` of ``leukofhir_schema``, version 1: tables ``messages``,
``outbox``, ``outbox_data``, ``outbox_meta`` and the sequence ``journal_owner``.  One
database (or schema, ``?options=-csearch_path%3Dname``) holds one service's journal.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from leukofhir.delivery.pgoutbox import PostgresOutbox
from leukofhir.lifecycle.pgstore import advisory_key, migrate
from leukofhir.lifecycle.store import DecodedCache, StateTable, patient_key
from leukofhir.pgsql import LIVE_OWNERS, Session
from leukofhir.serve.journal import Journal

if TYPE_CHECKING:
    import psycopg

__all__ = ["PostgresJournal", "open_outbox"]

_MIGRATIONS = {
    1: (
        "CREATE SEQUENCE journal_owner AS integer",
        "CREATE TABLE messages (id bigserial PRIMARY KEY, sender text NOT NULL,"
        " control_id text NOT NULL, sha256 text NOT NULL, format text NOT NULL,"
        " channel text NOT NULL, received text NOT NULL, data bytea NOT NULL,"
        " state text NOT NULL, owner bigint NOT NULL DEFAULT 0,"
        " outcome text NOT NULL DEFAULT '', ack text NOT NULL DEFAULT '', reply bytea,"
        " reports integer NOT NULL DEFAULT 0, findings text NOT NULL DEFAULT '[]',"
        " outputs text NOT NULL DEFAULT '[]', notes text NOT NULL DEFAULT '[]',"
        " reason text NOT NULL DEFAULT '', finished text NOT NULL DEFAULT '',"
        " UNIQUE (sender, control_id, sha256))",
        "CREATE INDEX messages_received ON messages (state) WHERE state = 'received'",
        "CREATE INDEX messages_failed ON messages (id) WHERE state = 'failed'",
        "CREATE INDEX messages_done ON messages (finished) WHERE state = 'done'",
        "CREATE TABLE outbox_meta (key text PRIMARY KEY, value text NOT NULL)",
        # key in byte order: Journal.delivery reads a message's documents as a key range
        'CREATE TABLE outbox (id bigserial PRIMARY KEY, key text COLLATE "C" NOT NULL UNIQUE,'
        " patient text NOT NULL, seq bigint NOT NULL, sha256 text NOT NULL,"
        " state text NOT NULL, enqueued double precision NOT NULL,"
        " attempts integer NOT NULL DEFAULT 0, retries integer NOT NULL DEFAULT 0,"
        " first_attempt double precision, next_attempt double precision NOT NULL DEFAULT 0,"
        " last_status integer, reason text NOT NULL DEFAULT '', outcome bytea,"
        " progress text NOT NULL DEFAULT '{}', finished double precision,"
        " claimed bigint NOT NULL DEFAULT 0)",
        "CREATE TABLE outbox_data (id bigint PRIMARY KEY, data bytea NOT NULL)",
        "CREATE INDEX outbox_line ON outbox (patient, seq, id) WHERE state IN ('pending', 'dead')",
        "CREATE INDEX outbox_due ON outbox (next_attempt, seq, id) WHERE state = 'pending'",
        "CREATE INDEX outbox_finished ON outbox (finished)"
        " WHERE state IN ('delivered', 'abandoned')",
    ),
}
_ORPHANED = f" AND owner NOT IN ({LIVE_OWNERS})"


def _migrate(db: psycopg.Connection[tuple[Any, ...]]) -> None:
    migrate(db)  # lifecycle_state
    migrate(db, "journal", _MIGRATIONS)


def open_outbox(
    url: str, *, dead_letters: Path | None = None, durable: bool = True
) -> PostgresOutbox:
    """The journal's outbox on a session of its own (a deliverer)."""
    return PostgresOutbox(Session(url, _migrate), dead_letters=dead_letters, durable=durable)


class PostgresStates(StateTable):
    """:class:`StateTable`'s reads and writes on the table ``lifecycle_state``."""

    def __init__(self, session: Session, *, cached: int = 4096) -> None:
        self._db = session  # runs the same statements
        self._cache = DecodedCache(cached)


class PostgresJournal(Journal):
    _UNOWNED = _ORPHANED

    def __init__(self, url: str, *, durable: bool = True, outbox: bool = False) -> None:
        """Raises UsageError when the database cannot be reached or set up."""
        self._session = Session(url, _migrate)
        self._db = self._session
        self._durable = durable
        self._synced: bool | None = durable
        self.owner = self._session.owner
        self.states = PostgresStates(self._session)
        self.outbox = PostgresOutbox(self._session) if outbox else None

    def alive(self, owner: int) -> bool:
        """Is the session ``owner`` (of any host) connected?"""
        return owner > 0 and self._session.alive(owner)

    def _owned_by(self, owners: Sequence[int] | None) -> tuple[str, tuple[int, ...]]:
        return _ORPHANED, ()

    def _hold(self, patients: Collection[str]) -> None:
        for key in sorted({patient_key(patient) for patient in patients}):
            self._db.execute("SELECT pg_advisory_xact_lock(?)", (advisory_key(key),))

    def _sync(self, wanted: bool) -> None:
        self._synced = wanted and self._durable  # for the next transaction (SET LOCAL)

    def _transaction(self) -> AbstractContextManager[None]:
        return self._session.transaction(bool(self._synced))

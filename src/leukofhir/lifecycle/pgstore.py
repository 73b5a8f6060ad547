"""Patients' lifecycle states in PostgreSQL, shared by processes and hosts (psycopg 3,
``pip install 'leukofhir[postgres]'``; imported only when a ``postgresql://`` URL is used).

Schema (created, or brought up to date, on first use; ``leukofhir_schema`` holds the
version of each part)::

    lifecycle_state (patient bytea PRIMARY KEY,   -- SHA-256 of the patient identifier
                     state   bytea NOT NULL,       -- zlib-compressed encoded PatientState
                     updated timestamptz NOT NULL)

Per-patient serialisation: :meth:`PostgresStore.transaction` opens a transaction and takes
a transaction-level advisory lock per patient (``pg_advisory_xact_lock`` on the first
8 bytes of the patient's key, in key order so that two messages sharing patients cannot
deadlock), *then* reads, so the read sees the last committed state; the save's upsert
commits with the transaction and the locks go with it.  A second process settling the same
patient waits at the lock until the first commits or rolls back, and then folds its report
into the state the first wrote: neither loses the other's report.  A process that dies
mid-transaction loses its connection; PostgreSQL rolls the transaction back (the previous
state stays) and frees the locks.  Advisory locks rather than ``SELECT ... FOR UPDATE``:
a patient's first report has no row to lock yet.

The locks share the database's advisory-lock space (bigint keys) with other applications:
give leukofhir its own database or schema (``?options=-csearch_path%3Dname``) when others
use advisory locks there.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from leukofhir.lifecycle.state import PatientState
from leukofhir.lifecycle.store import DecodedCache, patient_key

if TYPE_CHECKING:
    import psycopg

__all__ = ["SCHEMA_VERSION", "PostgresStore", "advisory_key", "connect", "migrate"]

SCHEMA_VERSION = 1
_PART = "lifecycle_state"
_MIGRATION_LOCK = 0x6C65756B6F666869  # "leukofhi": one process creates the schema at a time
_MIGRATIONS = {
    1: (
        "CREATE TABLE lifecycle_state (patient bytea PRIMARY KEY, state bytea NOT NULL,"
        " updated timestamptz NOT NULL DEFAULT now())",
    ),
}
_UPSERT = (
    "INSERT INTO lifecycle_state (patient, state) VALUES (%s, %s) ON CONFLICT (patient)"
    " DO UPDATE SET state = EXCLUDED.state, updated = now()"
)


class PostgresStore:
    """A :class:`leukofhir.lifecycle.store.StateStore` on one connection to ``url``."""

    def __init__(self, url: str, *, cached: int = 4096) -> None:
        """Raises ConnectionError when the database cannot be reached or set up."""
        self._db: psycopg.Connection[tuple[Any, ...]] = connect(url)
        self._cache = DecodedCache(cached)
        # the patients the open transaction holds: the bytes stored for each (None: none)
        self._held: dict[bytes, bytes | None] | None = None

    def load(self, patient: str) -> PatientState:
        key = patient_key(patient)
        if self._held is not None and key in self._held:
            stored = self._held[key]  # read under the lock, or saved since
        else:
            row = self._db.execute(
                "SELECT state FROM lifecycle_state WHERE patient = %s", (key,)
            ).fetchone()
            stored = None if row is None else bytes(row[0])
        return PatientState() if stored is None else self._cache.state(key, stored)

    def save(self, states: Mapping[str, PatientState]) -> None:
        if self._held is None:
            with self.transaction(states):
                self._write(states)
            return
        self._write(states)

    @contextmanager
    def transaction(self, patients: Collection[str]) -> Iterator[None]:
        """Two round trips: BEGIN, the locks and the read of the patients' states go
        together (pipeline mode; the read is a statement of its own, after the locks, so it
        sees what the previous holder committed); the save and COMMIT go together."""
        if self._held is not None:
            raise RuntimeError("a PostgresStore transaction is already open")
        keys = sorted({patient_key(patient) for patient in patients})
        with self._db.pipeline(), self._db.transaction():
            for key in keys:  # one statement each, in key order: no deadlock between two
                self._db.execute("SELECT pg_advisory_xact_lock(%s)", (advisory_key(key),))
            rows = self._db.execute(
                "SELECT patient, state FROM lifecycle_state WHERE patient = ANY(%s)", (keys,)
            ).fetchall()
            self._held = dict.fromkeys(keys)
            self._held.update((bytes(row[0]), bytes(row[1])) for row in rows)
            try:
                yield
            finally:
                self._held = None

    def _write(self, states: Mapping[str, PatientState]) -> None:
        assert self._held is not None
        rows = []
        for patient, state in states.items():
            key = patient_key(patient)
            if key not in self._held:
                raise RuntimeError("save of a patient the transaction does not hold")
            rows.append((key, self._cache.stored(key, state)))
        with self._db.cursor() as cursor:
            cursor.executemany(_UPSERT, rows)
        self._held.update(rows)

    def size(self) -> tuple[int, int]:
        """(patients, bytes of their stored states)."""
        row = self._db.execute(
            "SELECT COUNT(*), COALESCE(SUM(LENGTH(state)), 0) FROM lifecycle_state"
        ).fetchone()
        assert row is not None
        return int(row[0]), int(row[1])

    def close(self) -> None:
        self._db.close()


def connect(url: str, prepare: Callable[[Any], object] | None = None) -> Any:
    """A connection to ``url`` in autocommit mode, ``prepare``d (default: the lifecycle
    tables migrated).  Raises ConnectionError when the database cannot be reached or set up
    (ImportError without psycopg)."""
    import psycopg  # the optional extra: only a postgresql:// URL needs it

    try:
        db: psycopg.Connection[tuple[Any, ...]] = psycopg.connect(
            url, autocommit=True, application_name="leukofhir"
        )
    except psycopg.Error as exc:
        raise ConnectionError(f"PostgreSQL: {exc}") from exc
    try:
        (prepare or migrate)(db)
    except psycopg.Error as exc:
        db.close()
        raise ConnectionError(f"PostgreSQL: {exc}") from exc
    except BaseException:
        db.close()
        raise
    return db


def migrate(
    db: psycopg.Connection[tuple[Any, ...]],
    part: str = _PART,
    migrations: Mapping[int, tuple[str, ...]] = _MIGRATIONS,
) -> int:
    """Create the tables of ``part`` (by default the lifecycle states), or bring them to
    the last version of ``migrations``; the version found."""
    latest = max(migrations)
    with db.transaction():
        db.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
        db.execute(
            "CREATE TABLE IF NOT EXISTS leukofhir_schema"
            " (part text PRIMARY KEY, version integer NOT NULL)"
        )
        row = db.execute("SELECT version FROM leukofhir_schema WHERE part = %s", (part,)).fetchone()
        found = 0 if row is None else int(row[0])
        if found > latest:
            raise RuntimeError(
                f"the {part} tables are at version {found}, written by a newer leukofhir"
                f" (this one knows {latest})"
            )
        for version in range(found + 1, latest + 1):
            for statement in migrations[version]:
                db.execute(statement)
        db.execute(
            "INSERT INTO leukofhir_schema VALUES (%s, %s) ON CONFLICT (part)"
            " DO UPDATE SET version = EXCLUDED.version",
            (part, latest),
        )
    return found


def advisory_key(key: bytes) -> int:
    """The advisory lock of a patient (by its key): its first 8 bytes."""
    return int.from_bytes(key[:8], "big", signed=True)

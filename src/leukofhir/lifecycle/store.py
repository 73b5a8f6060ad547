"""Where patients' lifecycle states are kept: an edge, behind one small interface.

:class:`StateStore`: ``load`` one patient's state, ``save`` the new states of a message
atomically, and ``transaction(patients)``: a message's loads and save as one unit that no
other process settling the same patients interleaves with (a patient's report is never
folded into a state that another process is replacing, so no report is lost).
:class:`MemoryStore` serves one ``replay`` run; :class:`SqliteStore` keeps states in a file
(``replay --state FILE``; one writer at a time for the whole file);
:class:`leukofhir.lifecycle.pgstore.PostgresStore` in a PostgreSQL database shared by
processes and hosts (``replay --state postgresql://...``; a lock per patient).
:func:`open_store` picks one from a path or URL.  The batch ledger and the service journal
keep states in their own SQLite databases with :class:`StateTable`, in the same transaction
as their rows, so that an outcome and the state it led to are committed together.

Patients are keyed by the SHA-256 of their identifier: the store holds no identifier.
"""

from __future__ import annotations

import hashlib
import zlib
from collections import OrderedDict
from collections.abc import Collection, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from leukofhir.lifecycle.state import PatientState, RecordsJson, decode_state, encode_records

if TYPE_CHECKING:
    import sqlite3

    from leukofhir.pgsql import Database

__all__ = [
    "POSTGRES_SCHEMES",
    "DecodedCache",
    "MemoryStore",
    "SqliteStore",
    "StateStore",
    "StateTable",
    "open_store",
    "patient_key",
]

POSTGRES_SCHEMES = ("postgresql://", "postgres://")


class StateStore(Protocol):
    def load(self, patient: str) -> PatientState: ...

    def save(self, states: Mapping[str, PatientState]) -> None:
        """Every state of ``states`` or none of them."""
        ...

    def transaction(self, patients: Collection[str]) -> AbstractContextManager[None]:
        """The loads and the save made inside are one transaction, committed at the end
        (rolled back on an exception); until then no other process settles ``patients``.
        A message settles inside one: ``with store.transaction(patients): load... save``."""
        ...

    def close(self) -> None: ...


def open_store(where: str | Path) -> StateStore:
    """A PostgreSQL store for a ``postgresql://`` URL (psycopg is imported only then), else
    a SQLite file."""
    if isinstance(where, str) and where.startswith(POSTGRES_SCHEMES):
        from leukofhir.lifecycle.pgstore import PostgresStore

        return PostgresStore(where)
    return SqliteStore(Path(where))


class DecodedCache:
    """The latest states read or written, kept decoded (at most ``size``): a patient's next
    report finds its state without decoding it again, as long as the stored bytes are the
    same (another process may have written it in between).  A state written keeps the JSON
    of its records, which the patient's next state mostly shares (:func:`encode_records`):
    about as many bytes again as the state takes stored, uncompressed, per patient cached."""

    def __init__(self, size: int = 4096) -> None:
        self._cache: OrderedDict[bytes, tuple[bytes, PatientState, RecordsJson]] = OrderedDict()
        self._size = size

    def state(self, key: bytes, stored: bytes) -> PatientState:
        hit = self._cache.get(key)
        if hit is not None and hit[0] == stored:
            self._cache.move_to_end(key)
            return hit[1]
        state = decode_state(zlib.decompress(stored))
        self.remember(key, stored, state)
        return state

    def stored(self, key: bytes, state: PatientState) -> bytes:
        """The bytes a store keeps for ``state`` (the same for the same state).  The JSON of
        its records is kept for a patient seen before only (one who comes again): a stream
        of new patients would only fill memory with it."""
        hit = self._cache.get(key)
        data, records = encode_records(state, hit[2] if hit is not None else {})
        stored = zlib.compress(data, 1)
        self.remember(key, stored, state, records if hit is not None else None)
        return stored

    def remember(
        self, key: bytes, stored: bytes, state: PatientState, records: RecordsJson | None = None
    ) -> None:
        self._cache[key] = (stored, state, {} if records is None else records)
        self._cache.move_to_end(key)
        if len(self._cache) > self._size:
            self._cache.popitem(last=False)


class MemoryStore:
    def __init__(self) -> None:
        self._states: dict[str, PatientState] = {}

    def load(self, patient: str) -> PatientState:
        return self._states.get(patient) or PatientState()

    def save(self, states: Mapping[str, PatientState]) -> None:
        self._states.update(states)

    def transaction(self, patients: Collection[str]) -> AbstractContextManager[None]:
        return nullcontext()  # one process, one thread

    def close(self) -> None:
        pass

    def states(self) -> list[PatientState]:
        return list(self._states.values())


class StateTable:
    """The ``lifecycle_state`` table on an open SQLite connection; the caller owns the
    transaction (``save`` writes inside it).

    States are stored zlib-compressed (their JSON shrinks about 5 times) and kept decoded
    in a :class:`DecodedCache` (at most ``cached``)."""

    SCHEMA = (
        "CREATE TABLE IF NOT EXISTS lifecycle_state"
        " (patient BLOB PRIMARY KEY, state BLOB NOT NULL) WITHOUT ROWID"
    )

    _db: Database

    def __init__(self, db: sqlite3.Connection, *, cached: int = 4096) -> None:
        self._db = db
        self._cache = DecodedCache(cached)
        db.execute(self.SCHEMA)

    def load(self, patient: str) -> PatientState:
        return self.read(patient)[1]

    def read(self, patient: str) -> tuple[bytes | None, PatientState]:
        """A patient's state and the bytes stored for it (None: none yet), for a writer
        that checks at commit that nobody changed it meanwhile (:meth:`unchanged`)."""
        key = patient_key(patient)
        stored = self._stored(key)
        if stored is None:
            return None, PatientState()
        return stored, self._cache.state(key, stored)

    def unchanged(self, read: Mapping[str, bytes | None]) -> bool:
        """Do the patients of ``read`` still have the bytes read for them?"""
        return all(self._stored(patient_key(patient)) == stored for patient, stored in read.items())

    def save(self, states: Mapping[str, PatientState]) -> None:
        self._db.executemany(
            "INSERT INTO lifecycle_state (patient, state) VALUES (?, ?)"
            " ON CONFLICT (patient) DO UPDATE SET state = excluded.state",
            [
                (patient_key(patient), self.stored(patient, state))
                for patient, state in states.items()
            ],
        )

    def stored(self, patient: str, state: PatientState) -> bytes:
        """The bytes ``save`` stores for ``state`` (the same for the same state)."""
        return self._cache.stored(patient_key(patient), state)

    def _stored(self, key: bytes) -> bytes | None:
        row = self._db.execute(
            "SELECT state FROM lifecycle_state WHERE patient = ?", (key,)
        ).fetchone()
        return None if row is None else bytes(row[0])

    def size(self) -> tuple[int, int]:
        """(patients, bytes of their stored states)."""
        count, total = self._db.execute(
            "SELECT COUNT(*), COALESCE(SUM(LENGTH(state)), 0) FROM lifecycle_state"
        ).fetchone()
        return int(count), int(total)


class SqliteStore:
    """States in their own SQLite file (WAL), one transaction per ``save`` or per
    ``transaction`` (``BEGIN IMMEDIATE``: one writer at a time for the whole file, so
    processes sharing the file settle one message after another)."""

    def __init__(self, path: Path) -> None:
        import sqlite3  # only with --state: a replay in memory does without

        self._db = sqlite3.connect(path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        # a crash of the process loses nothing committed; a power cut may lose the last
        # commits, which a replay of the same files writes again
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._table = StateTable(self._db)

    def load(self, patient: str) -> PatientState:
        return self._table.load(patient)

    def save(self, states: Mapping[str, PatientState]) -> None:
        if self._db.in_transaction:  # inside ``transaction``: committed at its end
            self._table.save(states)
            return
        with self.transaction(states):
            self._table.save(states)

    @contextmanager
    def transaction(self, patients: Collection[str]) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def size(self) -> tuple[int, int]:
        return self._table.size()

    def close(self) -> None:
        self._db.close()


def patient_key(patient: str) -> bytes:
    """A patient's key in every store: the SHA-256 of the identifier."""
    return hashlib.sha256(patient.encode()).digest()

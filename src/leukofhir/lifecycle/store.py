"""Where patients' lifecycle states are kept: an edge, behind one small interface.

:class:`StateStore`: ``load`` one patient's state, ``save`` the new states of a message
atomically.  :class:`MemoryStore` serves one ``replay`` run; :class:`SqliteStore` keeps
states in a file (``replay --state FILE``).  The batch ledger and the service journal keep
states in their own SQLite databases with :class:`StateTable`, in the same transaction as
their rows, so that an outcome and the state it led to are committed together.

Patients are keyed by the SHA-256 of their identifier: the store holds no identifier.
"""

from __future__ import annotations

import hashlib
import zlib
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from leukofhir.lifecycle.state import PatientState, decode_state, encode_state

if TYPE_CHECKING:
    import sqlite3

__all__ = ["MemoryStore", "SqliteStore", "StateStore", "StateTable"]


class StateStore(Protocol):
    def load(self, patient: str) -> PatientState: ...

    def save(self, states: Mapping[str, PatientState]) -> None:
        """Every state of ``states`` or none of them."""
        ...

    def close(self) -> None: ...


class MemoryStore:
    def __init__(self) -> None:
        self._states: dict[str, PatientState] = {}

    def load(self, patient: str) -> PatientState:
        return self._states.get(patient) or PatientState()

    def save(self, states: Mapping[str, PatientState]) -> None:
        self._states.update(states)

    def close(self) -> None:
        pass

    def states(self) -> list[PatientState]:
        return list(self._states.values())


class StateTable:
    """The ``lifecycle_state`` table on an open SQLite connection; the caller owns the
    transaction (``save`` writes inside it).

    States are stored zlib-compressed (their JSON shrinks about 5 times).  The latest
    states read or written are kept decoded (at most ``cached``): a patient's next report
    finds its state without decoding it again, as long as the stored bytes are the same
    (another process may have written it in between)."""

    SCHEMA = (
        "CREATE TABLE IF NOT EXISTS lifecycle_state"
        " (patient BLOB PRIMARY KEY, state BLOB NOT NULL) WITHOUT ROWID"
    )

    def __init__(self, db: sqlite3.Connection, *, cached: int = 4096) -> None:
        self._db = db
        self._cache: OrderedDict[bytes, tuple[bytes, PatientState]] = OrderedDict()
        self._cached = cached
        db.execute(self.SCHEMA)

    def load(self, patient: str) -> PatientState:
        return self.read(patient)[1]

    def read(self, patient: str) -> tuple[bytes | None, PatientState]:
        """A patient's state and the bytes stored for it (None: none yet), for a writer
        that checks at commit that nobody changed it meanwhile (:meth:`unchanged`)."""
        key = _key(patient)
        stored = self._stored(key)
        if stored is None:
            return None, PatientState()
        hit = self._cache.get(key)
        if hit is not None and hit[0] == stored:
            self._cache.move_to_end(key)
            return stored, hit[1]
        state = decode_state(zlib.decompress(stored))
        self._remember(key, stored, state)
        return stored, state

    def unchanged(self, read: Mapping[str, bytes | None]) -> bool:
        """Do the patients of ``read`` still have the bytes read for them?"""
        return all(self._stored(_key(patient)) == stored for patient, stored in read.items())

    def save(self, states: Mapping[str, PatientState]) -> None:
        self._db.executemany(
            "INSERT OR REPLACE INTO lifecycle_state VALUES (?, ?)",
            [(_key(patient), self.stored(patient, state)) for patient, state in states.items()],
        )

    def stored(self, patient: str, state: PatientState) -> bytes:
        """The bytes ``save`` stores for ``state`` (the same for the same state)."""
        key, data = _key(patient), zlib.compress(encode_state(state), 1)
        self._remember(key, data, state)
        return data

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

    def _remember(self, key: bytes, stored: bytes, state: PatientState) -> None:
        self._cache[key] = (stored, state)
        self._cache.move_to_end(key)
        if len(self._cache) > self._cached:
            self._cache.popitem(last=False)


class SqliteStore:
    """States in their own SQLite file (WAL), one transaction per ``save``."""

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
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._table.save(states)
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def size(self) -> tuple[int, int]:
        return self._table.size()

    def close(self) -> None:
        self._db.close()


def _key(patient: str) -> bytes:
    return hashlib.sha256(patient.encode()).digest()

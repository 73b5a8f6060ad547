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
import sqlite3
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

from leukofhir.lifecycle.state import PatientState, decode_state, encode_state

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

    def __len__(self) -> int:
        return len(self._states)


class StateTable:
    """The ``lifecycle_state`` table on an open SQLite connection; the caller owns the
    transaction (``save`` writes inside it)."""

    SCHEMA = (
        "CREATE TABLE IF NOT EXISTS lifecycle_state"
        " (patient BLOB PRIMARY KEY, state BLOB NOT NULL) WITHOUT ROWID"
    )

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db
        db.execute(self.SCHEMA)

    def load(self, patient: str) -> PatientState:
        row = self._db.execute(
            "SELECT state FROM lifecycle_state WHERE patient = ?", (_key(patient),)
        ).fetchone()
        return PatientState() if row is None else decode_state(bytes(row[0]))

    def save(self, states: Mapping[str, PatientState]) -> None:
        self._db.executemany(
            "INSERT OR REPLACE INTO lifecycle_state VALUES (?, ?)",
            [(_key(patient), encode_state(state)) for patient, state in states.items()],
        )

    def size(self) -> tuple[int, int]:
        """(patients, bytes of their states)."""
        count, total = self._db.execute(
            "SELECT COUNT(*), COALESCE(SUM(LENGTH(state)), 0) FROM lifecycle_state"
        ).fetchone()
        return int(count), int(total)


class SqliteStore:
    """States in their own SQLite file (WAL), one transaction per ``save``."""

    def __init__(self, path: Path) -> None:
        self._db = sqlite3.connect(path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
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

    def close(self) -> None:
        self._db.close()


def _key(patient: str) -> bytes:
    return hashlib.sha256(patient.encode()).digest()

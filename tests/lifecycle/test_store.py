"""State stores: memory and SQLite give back what was saved; a save is all or nothing;
a state another process wrote is read again, not taken from the cache."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from leukofhir.lifecycle.state import PatientState
from leukofhir.lifecycle.store import MemoryStore, SqliteStore, StateTable
from tests.lifecycle.test_fold import facts, run


def some_state(reports: int) -> PatientState:
    return run(*(facts(f"R{i}", 24 * i, leukopenia=(1, "3.9")) for i in range(reports)))[1]


def test_memory_store() -> None:
    store = MemoryStore()
    assert store.load("a") == PatientState()
    store.save({"a": some_state(2)})
    assert store.load("a") == some_state(2)


def test_sqlite_store_keeps_states_across_opens_and_no_identifier(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite"
    store = SqliteStore(path)
    store.save({"urn:oid:1.2|MRN-4471": some_state(3), "urn:oid:1.2|MRN-9": some_state(1)})
    store.close()
    store = SqliteStore(path)
    assert store.load("urn:oid:1.2|MRN-4471") == some_state(3)
    assert store.load("urn:oid:1.2|other") == PatientState()
    store.close()
    assert b"MRN-4471" not in path.read_bytes()  # keyed by a hash


def test_a_failed_save_saves_nothing(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "state.sqlite")
    store.save({"a": some_state(1)})

    class Broken(PatientState):
        pass

    with pytest.raises(Exception):  # noqa: B017,PT011 - whatever encoding the object raises
        store.save({"a": some_state(2), "b": Broken(reports=object())})  # type: ignore[arg-type]
    assert store.load("a") == some_state(1)
    assert store.load("b") == PatientState()


def test_the_cache_never_hides_a_state_written_elsewhere(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite"
    one, two = sqlite3.connect(path), sqlite3.connect(path)
    first, second = StateTable(one), StateTable(two)
    first.save({"a": some_state(1)})
    one.commit()
    assert first.load("a") == some_state(1)  # now cached in ``first``
    second.save({"a": some_state(4)})
    two.commit()
    assert first.load("a") == some_state(4)

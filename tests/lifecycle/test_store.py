"""State stores: memory, SQLite and PostgreSQL give back what was saved; a save is all or
nothing; a state another process wrote is read again, not taken from the cache; a
transaction holds its patients until it commits or rolls back.

The PostgreSQL cases run against a throw-away cluster (tests/pgcluster.py) and skip with
the reason when PostgreSQL or psycopg is not here."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from leukofhir.cli import main
from leukofhir.lifecycle.state import PatientState
from leukofhir.lifecycle.store import MemoryStore, StateStore, StateTable, open_store
from tests.lifecycle.streams import canonical, patient_ids, sequential, stream, write
from tests.lifecycle.test_fold import facts, run

Opener = Callable[[], StateStore]


def some_state(reports: int) -> PatientState:
    return run(*(facts(f"R{i}", 24 * i, leukopenia=(1, "3.9")) for i in range(reports)))[1]


@pytest.fixture(params=["sqlite", "postgres"])
def where(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where a store keeps its states: a SQLite file or a new PostgreSQL database."""
    if request.param == "postgres":
        return str(request.getfixturevalue("postgres_url"))
    return str(tmp_path / "state.sqlite")


@pytest.fixture
def opener(where: str) -> Opener:
    """Opens a store on the same states (another connection, as another process would)."""
    return lambda: open_store(where)


def stored_bytes(where: str) -> bytes:
    if not where.startswith("postgresql://"):
        return Path(where).read_bytes()
    import psycopg

    with psycopg.connect(where) as db:
        rows = db.execute("SELECT patient || state FROM lifecycle_state").fetchall()
    return b"".join(bytes(row[0]) for row in rows)


def test_memory_store() -> None:
    store = MemoryStore()
    assert store.load("a") == PatientState()
    store.save({"a": some_state(2)})
    assert store.load("a") == some_state(2)
    with store.transaction(["a"]):
        store.save({"a": some_state(1)})
    assert store.load("a") == some_state(1)


def test_a_store_keeps_states_across_opens_and_no_identifier(opener: Opener, where: str) -> None:
    store = opener()
    store.save({"urn:oid:1.2|MRN-4471": some_state(3), "urn:oid:1.2|MRN-9": some_state(1)})
    store.close()
    store = opener()
    assert store.load("urn:oid:1.2|MRN-4471") == some_state(3)
    assert store.load("urn:oid:1.2|other") == PatientState()
    store.close()
    assert b"MRN-4471" not in stored_bytes(where)  # keyed by a hash


def test_a_failed_save_saves_nothing(opener: Opener) -> None:
    store = opener()
    store.save({"a": some_state(1)})

    class Broken(PatientState):
        pass

    with pytest.raises(Exception):  # noqa: B017,PT011 - whatever encoding the object raises
        store.save({"a": some_state(2), "b": Broken(reports=object())})  # type: ignore[arg-type]
    assert store.load("a") == some_state(1)
    assert store.load("b") == PatientState()
    store.close()


def test_a_transaction_that_raises_saves_nothing(opener: Opener) -> None:
    store = opener()
    store.save({"a": some_state(1)})
    seen: list[PatientState] = []

    def settle_and_fail() -> None:
        with store.transaction(["a", "b"]):
            seen.append(store.load("a"))
            store.save({"a": some_state(2), "b": some_state(2)})
            seen.append(store.load("a"))  # the transaction sees its own save
            raise ZeroDivisionError

    with pytest.raises(ZeroDivisionError):
        settle_and_fail()
    assert seen == [some_state(1), some_state(2)]
    assert store.load("a") == some_state(1)
    assert store.load("b") == PatientState()
    with store.transaction(["a"]):  # the store is usable again
        store.save({"a": some_state(3)})
    store.close()
    store = opener()
    assert store.load("a") == some_state(3)
    store.close()


def test_the_cache_never_hides_a_state_written_elsewhere(opener: Opener) -> None:
    first, second = opener(), opener()
    first.save({"a": some_state(1)})
    assert first.load("a") == some_state(1)  # now cached in ``first``
    second.save({"a": some_state(4)})
    assert first.load("a") == some_state(4)
    first.close()
    second.close()


def test_the_cache_of_a_state_table_never_hides_a_state_written_elsewhere(
    tmp_path: Path,
) -> None:
    path = tmp_path / "state.sqlite"
    one, two = sqlite3.connect(path), sqlite3.connect(path)
    first, second = StateTable(one), StateTable(two)
    first.save({"a": some_state(1)})
    one.commit()
    assert first.load("a") == some_state(1)  # now cached in ``first``
    second.save({"a": some_state(4)})
    two.commit()
    assert first.load("a") == some_state(4)


def test_a_transaction_holds_its_patients_until_it_commits(opener: Opener) -> None:
    """A second settler of the same patient waits, then folds into the first one's state."""
    first = opener()
    seen: list[PatientState] = []

    def settle_second() -> None:  # another connection, opened in its thread
        second = opener()
        with second.transaction(["a"]):
            seen.append(second.load("a"))
            second.save({"a": some_state(len(seen[0].reports) + 1)})
        second.close()

    with first.transaction(["a"]):
        assert first.load("a") == PatientState()
        first.save({"a": some_state(2)})
        waiting = threading.Thread(target=settle_second)
        waiting.start()
        waiting.join(0.5)
        assert waiting.is_alive()  # held by ``first``
        assert not seen
    waiting.join(10)
    assert seen == [some_state(2)]  # read after ``first`` committed: its report is not lost
    assert first.load("a") == some_state(3)
    first.close()


def test_replay_keeps_states_across_runs(
    where: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``replay --state FILE|URL``: a second run goes on from the first one's states."""
    messages = stream()[:12]  # days 0 and 1, preliminary and final, of each patient
    paths = write(tmp_path / "in", messages)
    state = ["--now", "2026-01-01T00:00:00Z", "--state", where]
    assert main(["replay", *state, *map(str, paths[:5])]) == 0
    assert main(["replay", *state, *map(str, paths[5:])]) == 0
    capsys.readouterr()
    store = open_store(where)
    assert {p: canonical(store.load(p)) for p in patient_ids(messages)} == sequential(messages)
    store.close()


def test_the_decoded_cache_stores_what_a_fresh_encoding_gives() -> None:
    """A patient's states written one after the other (each folded from the last, so they
    share records whose JSON the cache keeps) are stored as their own encoding would be."""
    import zlib

    from leukofhir.lifecycle.fold import fold
    from leukofhir.lifecycle.state import decode_state, encode_state
    from leukofhir.lifecycle.store import DecodedCache
    from tests.lifecycle.test_fold import RULES

    cache = DecodedCache(size=1)
    state = PatientState()
    for i in range(40):
        _, state = fold(state, facts(f"R{i}", 24 * i, leukopenia=(1, "3.9")), RULES)
        stored = cache.stored(b"a", state)
        assert stored == zlib.compress(encode_state(state), 1)
        assert cache.state(b"a", stored) is state
        if i % 10 == 9:  # another patient pushes it out: its next state is encoded afresh
            cache.stored(b"b", PatientState())
            assert decode_state(zlib.decompress(stored)) == state

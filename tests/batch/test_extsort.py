"""The spilling sorter: same order as ``sorted()``, bounded memory, runs really spilled."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from leukofhir.batch.extsort import SpillingSorter

ENTRY = st.tuples(
    st.integers(-(2**63), 2**63 - 1),
    st.text(st.characters(codec="utf-8") | st.sampled_from("\udc80\udcff"), max_size=8),
    st.integers(0, 2**40),
)


@given(
    items=st.lists(ENTRY, max_size=60),
    limit=st.integers(1, 7),
    chunk=st.integers(1, 4),
    fan_in=st.integers(2, 4),
)
@settings(max_examples=200, deadline=None)
def test_same_order_as_sorted_whatever_the_limits(
    items: list[tuple[int, str, int]], limit: int, chunk: int, fan_in: int
) -> None:
    sorter: SpillingSorter[tuple[int, str, int]] = SpillingSorter(
        limit=limit, chunk=chunk, fan_in=fan_in
    )
    for item in items:
        sorter.add(item)
    assert list(sorter.sorted()) == sorted(items)
    assert sorter.spilled >= len(items) // limit


def test_memory_holds_at_most_limit_items_and_runs_are_files(tmp_path: Path) -> None:
    sorter: SpillingSorter[int] = SpillingSorter(limit=100, chunk=10, fan_in=4, directory=tmp_path)
    values = [(i * 7919) % 10_007 for i in range(10_007)]
    for value in values:
        sorter.add(value)
        assert len(sorter._items) < 100
        assert len(sorter._runs) < 4  # merged into one before the fan-in is reached
    assert sorter.spilled > 100
    assert list(sorter.sorted()) == sorted(values)
    assert os.listdir(tmp_path) == []  # anonymous files: nothing to clean up


def test_close_without_reading_and_bad_parameters() -> None:
    sorter: SpillingSorter[str] = SpillingSorter(limit=2)
    for name in "dcba":
        sorter.add(name)
    sorter.close()
    assert list(sorter.sorted()) == []
    with pytest.raises(ValueError, match="limit"):
        SpillingSorter(limit=0)
    with pytest.raises(ValueError, match="fan_in"):
        SpillingSorter(fan_in=1)


def test_a_full_disk_reaches_the_caller(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tempfile

    def full(*args: object, **kwargs: object) -> object:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(tempfile, "TemporaryFile", full)
    sorter: SpillingSorter[int] = SpillingSorter(limit=2)
    sorter.add(1)
    with pytest.raises(OSError, match="No space"):
        sorter.add(2)

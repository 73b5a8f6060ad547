"""Sorting more items than memory should hold: sorted runs spilled to temporary files, merged.

:class:`SpillingSorter` keeps at most ``limit`` items in memory.  When it holds more, it
sorts them and writes them (pickled, ``chunk`` items per record) to an anonymous temporary
file: a *run*.  Reading back merges the runs and what is left in memory
(:func:`heapq.merge`, which is stable: equal items come out in the order they were added).
Merging reads one chunk per run at a time; when ``fan_in`` runs exist they are first merged
into one, so memory stays below ``limit + fan_in × chunk`` items however many are added.

Runs are anonymous files (:func:`tempfile.TemporaryFile`: no name on Linux, nothing left
behind by a killed process) in ``directory`` (the system's temporary folder when None).
Items must be picklable and ordered; an ``OSError`` (a full disk) reaches the caller.
"""

from __future__ import annotations

import heapq
import pickle
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any, Generic, Protocol, TypeVar

__all__ = ["SpillingSorter"]


class _Ordered(Protocol):
    def __lt__(self, other: Any, /) -> bool: ...


T = TypeVar("T", bound=_Ordered)


class SpillingSorter(Generic[T]):
    """Collect with :meth:`add`, then iterate once in sorted order (:meth:`sorted`)."""

    def __init__(
        self,
        *,
        limit: int = 50_000,
        chunk: int = 1_000,
        fan_in: int = 32,
        directory: Path | None = None,
    ) -> None:
        if limit < 1 or chunk < 1 or fan_in < 2:
            raise ValueError("limit and chunk must be at least 1, fan_in at least 2")
        self._limit = limit
        self._chunk = chunk
        self._fan_in = fan_in
        self._directory = directory
        self._items: list[T] = []
        self._runs: list[IO[bytes]] = []
        self.spilled = 0  # runs written (for tests and measurements)

    def add(self, item: T) -> None:
        self._items.append(item)
        if len(self._items) >= self._limit:
            self._items.sort()
            self._spill(self._items)
            self._items = []

    def sorted(self) -> Iterator[T]:
        """Every item added, in order; the runs are closed (deleted) at the end."""
        self._items.sort()
        items, self._items = self._items, []
        runs, self._runs = self._runs, []
        try:
            yield from heapq.merge(*(_read(run) for run in runs), items)
        finally:
            for run in runs:
                run.close()

    def close(self) -> None:
        """Drop everything (the runs' files too) without reading it."""
        self._items = []
        for run in self._runs:
            run.close()
        self._runs = []

    def _spill(self, items: Iterable[T]) -> None:
        run = tempfile.TemporaryFile(dir=self._directory)  # noqa: SIM115 - kept open
        try:
            chunk: list[T] = []
            for item in items:
                chunk.append(item)
                if len(chunk) >= self._chunk:
                    pickle.dump(chunk, run, pickle.HIGHEST_PROTOCOL)
                    chunk = []
            if chunk:
                pickle.dump(chunk, run, pickle.HIGHEST_PROTOCOL)
            run.seek(0)
        except BaseException:
            run.close()
            raise
        self.spilled += 1
        if len(self._runs) + 1 >= self._fan_in:  # merge them all into one run first
            runs, self._runs = self._runs, []
            try:
                self._spill(heapq.merge(*(_read(r) for r in runs), _read(run)))
            finally:
                for r in runs:
                    r.close()
                run.close()
        else:
            self._runs.append(run)


def _read(run: IO[bytes]) -> Iterator[Any]:
    while True:
        try:
            chunk = pickle.load(run)
        except EOFError:
            return
        yield from chunk

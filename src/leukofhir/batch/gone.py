"""Files that left IN, found in bounded memory by holding a complete scan against the ledger.

OUT must end as a fresh run over the files as they are now would leave it.  A file
deleted from IN, or renamed (the same bytes under a new name, which the scan finds as a
new file), must therefore leave the ledger with its messages and their outputs.  Nothing
tells the batch that a file went; what it can see is that a complete scan did not find it.

During a pass, :class:`Seen` collects the source of every input file the scan finds,
ready or left for later because it is younger than ``--min-age`` (a file being written to
is not gone), in a :class:`~leukofhir.batch.extsort.SpillingSorter`: at most ``limit``
names in memory, sorted runs spilled to anonymous files in OUT, as the scan's own sort
does.  After a pass that went to the end (never after one stopped by a signal, an error
or a kill: then nothing is removed, and the next complete pass does it), :meth:`Seen.gone`
merges the sorted names with the ledger's files, streamed in the same order (SQLite
orders TEXT by memcmp of its UTF-8, so the names are compared as UTF-8 bytes here), and
yields the files the scan did not find, except under the folders it could not list.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from leukofhir.batch.extsort import SpillingSorter

__all__ = ["Seen"]


class Seen:
    """The sources one scan found; :meth:`gone` once the scan is complete."""

    def __init__(self, *, limit: int, directory: Path | None = None) -> None:
        self._names: SpillingSorter[bytes] = SpillingSorter(limit=limit, directory=directory)
        self.count = 0

    def add(self, source: str) -> None:
        self._names.add(source.encode("utf-8"))
        self.count += 1

    def gone(self, recorded: Iterable[str], *, unlisted: Sequence[str] = ()) -> Iterator[str]:
        """The sources of ``recorded`` (in UTF-8 byte order) that were not added, but for
        those under a folder of ``unlisted`` (prefixes ending in ``/``; ``""`` is IN
        itself: then none).  Reads the names once; call it once."""
        names = self._names.sorted()
        current = next(names, None)
        for source in recorded:
            key = source.encode("utf-8")
            while current is not None and current < key:
                current = next(names, None)
            if current == key or any(source.startswith(prefix) for prefix in unlisted):
                continue
            yield source

    def close(self) -> None:
        """Drop the names (and their spilled runs) without reading them."""
        self._names.close()

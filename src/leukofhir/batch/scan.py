"""Find the input files under IN: streamed, in a defined order, leaving partial files alone.

Order.  "Modification time, then name" over a whole tree needs every path before the
first one can be given, which a million files make too big.  The scan therefore sorts per
folder: a folder's files come first, by (mtime, name), then its sub-folders, by name, each
the same way, depth first.  Within one folder (the usual hot folder) this is exactly the
order asked for.

Memory.  A folder's entries are sorted by a :class:`~leukofhir.batch.extsort.SpillingSorter`:
at most ``sort_limit`` entries are held in memory, the rest go to sorted runs in anonymous
temporary files (in ``spill_dir``) that are merged as the files are given out.  Memory is
therefore bounded whatever the number of files in one folder (one million or more); what
grows with the tree is only the set of folder identities kept to read each folder once.

Left alone: names starting with ``.`` (files and folders), names of partial transfers
(``*.tmp``, ``*.part``, ``*.partial``, ``*.filepart``, ``*.crdownload``, ``*~``), files
modified less than ``min_age`` seconds ago (left for the next pass), and the folders given
in ``exclude`` (OUT and the move targets when they lie inside IN).  Symbolic links are
followed; a folder reached twice (a link loop, or two links to one folder) is visited once.
Folders that cannot be listed are counted and reported, never fatal.  An ``OSError`` while
spilling (a full disk) reaches the caller.
"""

from __future__ import annotations

import os
import stat
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from leukofhir.batch.extsort import SpillingSorter

__all__ = ["SORT_LIMIT", "Found", "ScanStats", "is_documentation", "scan"]

PARTIAL_SUFFIXES = (".tmp", ".part", ".partial", ".filepart", ".crdownload", "~")
SORT_LIMIT = 50_000  # entries of one folder held in memory (about 10 MB) before spilling


def is_documentation(name: str) -> bool:
    """A README or Markdown file beside the messages (as in sample_messages/): not input."""
    return name.startswith("README") or name.endswith(".md")


@dataclass(frozen=True, slots=True)
class Found:
    path: Path
    source: str  # path relative to IN, "/"-separated: the file's name in the ledger
    size: int
    mtime_ns: int


@dataclass(slots=True)
class ScanStats:
    """What the scan passed over, by reason (``young``, ``hidden``, ``loop``, ...)."""

    left: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)  # folders that could not be listed
    spilled: int = 0  # sorted runs written to temporary files


def scan(
    root: Path,
    *,
    now_ns: int,
    min_age: float = 1.0,
    exclude: tuple[Path, ...] = (),
    stats: ScanStats | None = None,
    sort_limit: int = SORT_LIMIT,
    spill_dir: Path | None = None,
) -> Iterator[Found]:
    """Yield the files under ``root`` that are ready, in the order described above."""
    stats = stats if stats is not None else ScanStats()
    youngest = now_ns - int(min_age * 1e9)
    excluded = {_identity(p) for p in exclude if p.exists()}
    seen: set[tuple[int, int]] = set()
    if root.is_file():
        info = root.stat()
        yield Found(root, root.name, info.st_size, info.st_mtime_ns)
        return
    # depth first: one iterator of (folder, prefix) per level, each in name order
    stack: list[Iterator[tuple[Path, str]]] = [iter([(root, "")])]
    while stack:
        try:
            folder, prefix = next(stack[-1])
        except StopIteration:
            stack.pop()
            continue
        try:
            identity = _identity(folder)
        except OSError as exc:
            stats.errors.append(f"{prefix or '.'}: {exc.strerror}")
            continue
        if identity in seen:
            stats.left["loop"] += 1
            continue
        seen.add(identity)
        if identity in excluded:
            continue
        files: SpillingSorter[tuple[int, str, int]] = SpillingSorter(
            limit=sort_limit, directory=spill_dir
        )
        folders: SpillingSorter[str] = SpillingSorter(limit=sort_limit, directory=spill_dir)
        try:
            listed = _list(folder, youngest, files, folders, stats)
        except BaseException:  # spilling failed (a full disk): the caller's to report
            files.close()
            folders.close()
            raise
        if listed is not None:
            files.close()
            folders.close()
            stats.errors.append(f"{prefix or '.'}: {listed.strerror}")
            continue
        stats.spilled += files.spilled + folders.spilled
        for mtime_ns, name, size in files.sorted():
            yield Found(folder / name, prefix + name, size, mtime_ns)
        stack.append(_children(folder, prefix, folders.sorted()))


def _list(
    folder: Path,
    youngest: int,
    files: SpillingSorter[tuple[int, str, int]],
    folders: SpillingSorter[str],
    stats: ScanStats,
) -> OSError | None:
    """Sort ``folder``'s entries into ``files`` and ``folders``; the error that stopped
    the listing, if one did (an ``OSError`` of the sorters themselves is raised)."""
    try:
        entries = os.scandir(folder)
    except OSError as exc:
        return exc
    with entries:
        while True:
            try:
                entry = next(entries)
            except StopIteration:
                return None
            except OSError as exc:
                return exc
            _classify(entry, youngest, files, folders, stats)


def _children(folder: Path, prefix: str, names: Iterator[str]) -> Iterator[tuple[Path, str]]:
    for name in names:
        yield folder / name, f"{prefix}{name}/"


def _classify(
    entry: os.DirEntry[str],
    youngest: int,
    files: SpillingSorter[tuple[int, str, int]],
    folders: SpillingSorter[str],
    stats: ScanStats,
) -> None:
    name = entry.name
    if name.startswith("."):
        stats.left["hidden"] += 1
        return
    try:
        info = entry.stat()  # follows links
    except OSError:
        stats.left["broken link"] += 1
        return
    if stat.S_ISDIR(info.st_mode):
        folders.add(name)
    elif not stat.S_ISREG(info.st_mode):
        stats.left["not a file"] += 1
    elif name.endswith(PARTIAL_SUFFIXES):
        stats.left["partial"] += 1
    elif is_documentation(name):
        stats.left["documentation"] += 1
    elif info.st_mtime_ns > youngest:
        stats.left["young"] += 1
    else:
        files.add((info.st_mtime_ns, name, info.st_size))


def _identity(path: Path) -> tuple[int, int]:
    info = path.stat()
    return info.st_dev, info.st_ino

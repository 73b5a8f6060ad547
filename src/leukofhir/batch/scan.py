"""Find the input files under IN: streamed, in a defined order, leaving partial files alone.

Order.  "Modification time, then name" over a whole tree needs every path before the
first one can be given, which a million files make too big.  The scan therefore sorts per
folder: a folder's files come first, by (mtime, name), then its sub-folders, by name, each
the same way, depth first.  Memory holds the entries of the folder being listed plus the
names of the sub-folders still to visit on the way down: bounded by the largest folder,
not by the number of files.  Within one folder (the usual hot folder) this is exactly the
order asked for.

Left alone: names starting with ``.`` (files and folders), names of partial transfers
(``*.tmp``, ``*.part``, ``*.partial``, ``*.filepart``, ``*.crdownload``, ``*~``), files
modified less than ``min_age`` seconds ago (left for the next pass), and the folders given
in ``exclude`` (OUT and the move targets when they lie inside IN).  Symbolic links are
followed; a folder reached twice (a link loop, or two links to one folder) is visited once.
Folders that cannot be listed are counted and reported, never fatal.
"""

from __future__ import annotations

import os
import stat
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Found", "ScanStats", "is_documentation", "scan"]

PARTIAL_SUFFIXES = (".tmp", ".part", ".partial", ".filepart", ".crdownload", "~")


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


def scan(
    root: Path,
    *,
    now_ns: int,
    min_age: float = 1.0,
    exclude: tuple[Path, ...] = (),
    stats: ScanStats | None = None,
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
    stack: list[tuple[Path, str]] = [(root, "")]
    while stack:
        folder, prefix = stack.pop()
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
        files: list[tuple[int, str, int]] = []
        folders: list[str] = []
        try:
            with os.scandir(folder) as entries:
                for entry in entries:
                    _classify(entry, files, folders, stats)
        except OSError as exc:
            stats.errors.append(f"{prefix or '.'}: {exc.strerror}")
            continue
        files.sort()
        for mtime_ns, name, size in files:
            if mtime_ns > youngest:
                stats.left["young"] += 1
                continue
            yield Found(folder / name, prefix + name, size, mtime_ns)
        del files
        for name in sorted(folders, reverse=True):  # popped in name order
            stack.append((folder / name, f"{prefix}{name}/"))


def _classify(
    entry: os.DirEntry[str],
    files: list[tuple[int, str, int]],
    folders: list[str],
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
        folders.append(name)
    elif not stat.S_ISREG(info.st_mode):
        stats.left["not a file"] += 1
    elif name.endswith(PARTIAL_SUFFIXES):
        stats.left["partial"] += 1
    elif is_documentation(name):
        stats.left["documentation"] += 1
    else:
        files.append((info.st_mtime_ns, name, info.st_size))


def _identity(path: Path) -> tuple[int, int]:
    info = path.stat()
    return info.st_dev, info.st_ino

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
None of this blocks or stops the scan: a FIFO, socket or device is never opened (only
``stat``-ed), and a broken link, such a special file, an entry that cannot be looked at and
a folder that cannot be listed are counted by reason and named in :class:`ScanStats`
(``passed_over``, ``errors``) for the runner to log and summarise.  An ``OSError`` while
spilling (a full disk) reaches the caller.

Files that left IN.  ``present`` is called with the source of every input file the scan
finds, ready or left for a later pass because it is young, or there but not to be looked
at (permissions); and, for a partial file (``x.hl7.part``), with the name it will have
(``x.hl7``: that file is being written again).  What a complete pass did not report is no
longer in IN (:mod:`leukofhir.batch.gone`), except under the folders it could not list
(``ScanStats.unlisted``).
"""

from __future__ import annotations

import os
import stat
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from leukofhir.batch.extsort import SpillingSorter
from leukofhir.inputfile import is_documentation, kind

__all__ = ["SORT_LIMIT", "Found", "ScanStats", "scan"]

PARTIAL_SUFFIXES = (".tmp", ".part", ".partial", ".filepart", ".crdownload", "~")
SORT_LIMIT = 50_000  # entries of one folder held in memory (about 10 MB) before spilling


@dataclass(frozen=True, slots=True)
class Found:
    path: Path
    source: str  # path relative to IN, "/"-separated: the file's name in the ledger (text)
    size: int
    mtime_ns: int


PASSED_OVER_KEPT = 1000  # entries named in ScanStats.passed_over (the counts are all)


@dataclass(slots=True)
class ScanStats:
    """What one scan passed over, by reason (``young``, ``hidden``, ``loop``, ``FIFO``,
    ``broken link`` ...), and which entries and folders it could not take."""

    left: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)  # "prefix: reason" of unlisted folders
    unlisted: list[tuple[str, str]] = field(default_factory=list)  # (prefix, reason); "": IN
    passed_over: list[tuple[str, str]] = field(default_factory=list)  # (source, reason)
    spilled: int = 0  # sorted runs written to temporary files

    def unlisted_folder(self, prefix: str, reason: str) -> None:
        self.errors.append(f"{prefix or '.'}: {reason}")
        self.unlisted.append((prefix, reason))

    def pass_over(self, source: str, key: str, reason: str) -> None:
        """An entry that is not input and that someone should hear about."""
        self.left[key] += 1
        if len(self.passed_over) < PASSED_OVER_KEPT:
            self.passed_over.append((source, reason))


def scan(
    root: Path,
    *,
    now_ns: int,
    min_age: float = 1.0,
    exclude: tuple[Path, ...] = (),
    stats: ScanStats | None = None,
    sort_limit: int = SORT_LIMIT,
    spill_dir: Path | None = None,
    present: Callable[[str], None] | None = None,
) -> Iterator[Found]:
    """Yield the files under ``root`` that are ready, in the order described above."""
    stats = stats if stats is not None else ScanStats()
    youngest = now_ns - int(min_age * 1e9)
    excluded = {_identity(p) for p in exclude if p.exists()}
    seen: set[tuple[int, int]] = set()
    tell = present if present is not None else _nobody
    if root.is_file():
        info = root.stat()
        tell(_as_text(root.name))
        yield Found(root, _as_text(root.name), info.st_size, info.st_mtime_ns)
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
            stats.unlisted_folder(prefix, exc.strerror or str(exc))
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
            listed = _list(folder, prefix, youngest, files, folders, stats, tell)
        except BaseException:  # spilling failed (a full disk): the caller's to report
            files.close()
            folders.close()
            raise
        if listed is not None:
            files.close()
            folders.close()
            stats.unlisted_folder(prefix, listed.strerror or str(listed))
            continue
        stats.spilled += files.spilled + folders.spilled
        for mtime_ns, name, size in files.sorted():
            yield Found(folder / name, prefix + _as_text(name), size, mtime_ns)
        stack.append(_children(folder, prefix, folders.sorted()))


def _list(
    folder: Path,
    prefix: str,
    youngest: int,
    files: SpillingSorter[tuple[int, str, int]],
    folders: SpillingSorter[str],
    stats: ScanStats,
    present: Callable[[str], None],
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
            _classify(entry, prefix, youngest, files, folders, stats, present)


def _children(folder: Path, prefix: str, names: Iterator[str]) -> Iterator[tuple[Path, str]]:
    for name in names:
        yield folder / name, f"{prefix}{_as_text(name)}/"


def _classify(
    entry: os.DirEntry[str],
    prefix: str,
    youngest: int,
    files: SpillingSorter[tuple[int, str, int]],
    folders: SpillingSorter[str],
    stats: ScanStats,
    present: Callable[[str], None],
) -> None:
    name = entry.name
    if name.startswith("."):
        stats.left["hidden"] += 1
        return
    source = prefix + _as_text(name)
    try:
        info = entry.stat()  # follows links; never opens (a FIFO would block an open)
    except FileNotFoundError:
        if entry.is_symlink():
            stats.pass_over(source, "broken link", "broken symbolic link")
        else:  # deleted since the listing: as if it had not been there
            stats.left["gone during the scan"] += 1
        return
    except OSError as exc:  # there, but not to be looked at (permissions): not gone
        stats.pass_over(source, "unreadable", exc.strerror or str(exc))
        present(source)
        return
    if stat.S_ISDIR(info.st_mode):
        folders.add(name)
    elif not stat.S_ISREG(info.st_mode):
        what = kind(info.st_mode)
        stats.pass_over(source, what, f"not a regular file (a {what})")
    elif name.endswith(PARTIAL_SUFFIXES):
        stats.left["partial"] += 1
        present(_final_name(source))  # that file is being written again: not gone
    elif is_documentation(name):
        stats.left["documentation"] += 1
    elif info.st_mtime_ns > youngest:
        stats.left["young"] += 1
        present(source)  # in IN, for a later pass: not gone
    else:
        present(source)
        files.add((info.st_mtime_ns, name, info.st_size))


def _nobody(source: str) -> None:
    pass


def _final_name(partial: str) -> str:
    """``x.hl7`` for ``x.hl7.part`` (the name a partial file will have)."""
    suffix = next(suffix for suffix in PARTIAL_SUFFIXES if partial.endswith(suffix))
    return partial[: -len(suffix)]


def _as_text(name: str) -> str:
    """A file name as the ledger's text: as it is when it is UTF-8 (nearly always); else
    its undecodable bytes written ``\\xe9`` (SQLite text must be UTF-8: a name holding
    the surrogates Python decodes such bytes to cannot be stored)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return name


def _identity(path: Path) -> tuple[int, int]:
    info = path.stat()
    return info.st_dev, info.st_ino

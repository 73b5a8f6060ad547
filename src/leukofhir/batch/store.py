"""Files under OUT, written so that a crash never leaves a half-written one.

Every write goes to a temporary file in the target's own folder (``.<name>.<pid>.tmp``)
and is renamed over the target: a reader sees the old file or the new one, never a part.
With ``fsync`` the data is flushed before the rename and the folder after it (durable
across a power cut, at a cost).  Outputs are deterministic, so renaming a re-processed
message over its own earlier output replaces a file by the same bytes.

Moves of inputs (``--move-processed`` / ``--move-rejected``) never overwrite: they use
``link()`` + ``unlink()`` on one file system (``link`` fails if the target exists), and
pick the next free ``name.N`` when the name is taken.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator
from pathlib import Path

from leukofhir.batch.naming import inside, inside_name

__all__ = ["Store", "move_no_overwrite", "sweep_temporaries"]

TMP_SUFFIX = ".tmp"


class Store:
    """Atomic writes of named outputs below ``root``."""

    def __init__(self, root: Path, *, fsync: bool = False) -> None:
        self.root = root
        self.fsync = fsync
        self._root = os.fspath(root)
        self._made: set[str] = set()

    def write(self, relative: str, data: bytes) -> None:
        # strings, not Path objects: this runs once per output
        target = inside_name(self._root, relative)
        folder, _, name = target.rpartition("/")
        if folder not in self._made:
            os.makedirs(folder, exist_ok=True)
            self._made.add(folder)
        temporary = f"{folder}/.{name}.{os.getpid()}{TMP_SUFFIX}"
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            if self.fsync:
                os.fsync(fd)
        except BaseException:
            os.close(fd)
            _unlink_quietly(temporary)
            raise
        os.close(fd)
        try:
            os.replace(temporary, target)
        except BaseException:
            _unlink_quietly(temporary)
            raise
        if self.fsync:
            sync_folder(folder)


def sync_folder(folder: Path | str) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sweep_temporaries(root: Path) -> int:
    """Remove the temporary files a killed run left below ``root``; how many."""
    removed = 0
    for path in _temporaries(root):
        _unlink_quietly(path)
        removed += 1
    return removed


def _temporaries(root: Path) -> Iterator[Path]:
    for folder, _dirs, files in os.walk(root):
        for name in files:
            if name.startswith(".") and name.endswith(TMP_SUFFIX):
                yield Path(folder, name)


def move_no_overwrite(source: Path, folder: Path, relative: str, *, fsync: bool = False) -> Path:
    """Move ``source`` to ``folder/relative`` atomically, never replacing a file: when the
    name is taken, ``name.1``, ``name.2`` ... Returns where it went."""
    target = inside(folder, relative)
    target.parent.mkdir(parents=True, exist_ok=True)
    candidate = target
    for n in range(1, 10_000):
        try:
            os.link(source, candidate)
        except FileExistsError:
            if os.path.samefile(source, candidate):  # a killed move: linked, not unlinked
                break
            candidate = target.with_name(f"{target.name}.{n}")
            continue
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            raise OSError(
                exc.errno, f"cannot move {source} to another file system atomically"
            ) from exc
        break
    else:
        raise FileExistsError(f"no free name for {target}")
    if fsync:
        sync_folder(candidate.parent)
    os.unlink(source)
    return candidate


def _unlink_quietly(path: Path | str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)

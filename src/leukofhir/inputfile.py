"""Input files on disk: which paths replay reads, and opening them without ever blocking.

Which paths (:func:`input_files`).  Every file and folder named is read: a folder
recursively, its entries in name order (so files come in path order), leaving out dotfiles
and dot-folders and README/``*.md`` files (documentation beside the messages).  Nothing
else is passed over in silence: a broken symbolic link, a folder that cannot be listed, a
FIFO, socket or device, and a link to a folder (not followed: no loops) each come out as a
:class:`PassedOver` with the reason, for the caller to log and count.

A plain ``open()`` of a FIFO waits until a writer comes, forever if none does; a
character device may never end.  Input is therefore opened with ``O_NONBLOCK`` (which
changes nothing for a regular file, and makes the open of a FIFO return at once) and
checked with ``fstat`` on the open descriptor, so a FIFO, socket or device put in a
file's place between a listing and the open is refused too, with
:class:`NotRegularFileError` (an ``OSError``) naming what it is.  Replay and the batch's
workers read through here; :func:`kind` names a path's type in their log lines.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

__all__ = [
    "NotRegularFileError",
    "PassedOver",
    "input_files",
    "is_documentation",
    "kind",
    "open_input",
    "read_input",
]

_KINDS = (
    (stat.S_ISDIR, "folder"),
    (stat.S_ISFIFO, "FIFO"),
    (stat.S_ISSOCK, "socket"),
    (stat.S_ISCHR, "character device"),
    (stat.S_ISBLK, "block device"),
    (stat.S_ISLNK, "symbolic link"),
)


class NotRegularFileError(OSError):
    """The path is a FIFO, a socket, a device or a folder: not an input file."""

    def __init__(self, what: str) -> None:
        super().__init__(errno.EINVAL, f"not a regular file (a {what})")


def kind(mode: int) -> str:
    """``file``, ``folder``, ``FIFO``, ``socket``, ``character device`` ... of a st_mode."""
    for test, name in _KINDS:
        if test(mode):
            return name
    return "file" if stat.S_ISREG(mode) else "special file"


def open_input(path: str | os.PathLike[str]) -> tuple[BinaryIO, os.stat_result]:
    """An open regular file and its ``fstat``; never blocks.  Raises ``OSError``
    (:class:`NotRegularFileError` for anything but a regular file)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise NotRegularFileError(kind(info.st_mode))
        handle = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    return handle, info


def read_input(path: str | os.PathLike[str]) -> tuple[bytes, os.stat_result]:
    """The bytes of a regular file and its ``fstat`` (see :func:`open_input`)."""
    handle, info = open_input(path)
    with handle:
        return handle.read(), info


def is_documentation(name: str) -> bool:
    """A README or Markdown file beside the messages (as in sample_messages/): not input."""
    return name.startswith("README") or name.endswith(".md")


@dataclass(frozen=True, slots=True)
class PassedOver:
    """A path under a folder that is not read, and why."""

    path: Path
    reason: str
    unreadable: bool  # meant as input but cannot be read (a broken link, an unlistable folder)


def input_files(paths: Sequence[Path]) -> Iterator[Path | PassedOver]:
    """The files to read, in the order given, each folder's in path order; what is passed
    over under a folder, with the reason (see the module's docstring).  A path named
    itself is given as it is: the caller checked that it exists and what it is."""
    for path in paths:
        if path.is_dir():
            yield from _walk(path)
        else:
            yield path


def _walk(folder: Path) -> Iterator[Path | PassedOver]:
    try:
        with os.scandir(folder) as listing:
            entries = sorted(listing, key=lambda entry: entry.name)
    except OSError as exc:
        yield PassedOver(folder, f"folder not readable: {exc.strerror}", unreadable=True)
        return
    for entry in entries:
        if entry.name.startswith("."):
            continue
        path = Path(entry.path)
        try:
            info = entry.stat()  # follows a link
        except FileNotFoundError:
            yield PassedOver(path, "broken symbolic link", unreadable=True)
            continue
        except OSError as exc:
            yield PassedOver(path, exc.strerror or str(exc), unreadable=True)
            continue
        if stat.S_ISDIR(info.st_mode):
            if entry.is_symlink():
                yield PassedOver(path, "link to a folder, not followed", unreadable=False)
            else:
                yield from _walk(path)
        elif not stat.S_ISREG(info.st_mode):
            yield PassedOver(path, f"not a regular file (a {kind(info.st_mode)})", False)
        elif not is_documentation(entry.name):
            yield path

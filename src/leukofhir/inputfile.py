"""Opening input files without ever blocking: only regular files are read.

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
from typing import BinaryIO

__all__ = ["NotRegularFileError", "kind", "open_input", "read_input"]

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

"""Output names from stable identifiers, safe whatever the message contains.

A message's outputs are named ``<kind>/<hh>/<stem>_<key>``:

* ``kind`` is ``processed``, ``skipped`` or ``rejected``;
* ``key`` is 16 hex digits of SHA-256 over the message's source (path relative to IN), its
  byte offset and the SHA-256 of its bytes: the same message in the same place always gets
  the same name, two different messages never share one;
* ``stem`` is the MSH-10 control id reduced to ``[A-Za-z0-9._-]`` (at most 48 characters,
  no leading dot), or ``message`` when nothing is left: a control id like ``../../etc/x``
  becomes ``etc_x``; it is there for people looking for a message, never for uniqueness;
* ``hh`` is the key's first two digits, so that no folder holds more than 1/256 of a
  million outputs.

Nothing in a name comes from the input except the filtered stem, and :func:`inside`
checks every joined path once more before anything is written.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

__all__ = ["inside", "inside_name", "message_key", "output_base", "safe_stem"]

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_STEM_MAX = 48


def safe_stem(control_id: str) -> str:
    """``control_id`` as a harmless file-name part (never empty, never ``.``/``..``)."""
    stem = _UNSAFE.sub("_", control_id)[:_STEM_MAX].strip("._-")
    return stem or "message"


def message_key(source: str, offset: int, sha256: str) -> str:
    """16 hex digits naming one message at one place of one source file."""
    text = f"{source}\0{offset}\0{sha256}".encode("utf-8", "surrogateescape")
    return hashlib.sha256(text).hexdigest()[:16]


def output_base(kind: str, control_id: str, key: str) -> str:
    """Relative base name (no suffix) of a message's outputs under OUT."""
    return f"{kind}/{key[:2]}/{safe_stem(control_id)}_{key}"


def inside(root: Path, relative: str) -> Path:
    """``root / relative``, refusing anything that could land outside ``root``: an absolute
    name, an empty, ``.`` or ``..`` part, a NUL or a backslash.  (A lexical check: OUT's
    folders are made by the batch itself, and resolving every path costs 40 µs.)"""
    return Path(inside_name(str(root), relative))


def inside_name(root: str, relative: str) -> str:
    """:func:`inside` as a string (what the per-message writes use: no Path objects)."""
    if (
        relative.startswith("/")
        or "\0" in relative
        or "\\" in relative
        or any(part in ("", ".", "..") for part in relative.split("/"))
    ):
        raise ValueError(f"output name {relative!r} escapes {root}")
    return f"{root}/{relative}"

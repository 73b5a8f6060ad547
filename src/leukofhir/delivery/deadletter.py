"""Dead letters as files, for people: ``OUT/dead/<name>.bundle.json`` (the document as it
was queued) beside ``OUT/dead/<name>.outcome.json`` (the server's OperationOutcome, or one
of ours saying why, when the server sent none).  Written atomically (batch's
:class:`~leukofhir.batch.store.Store`); removed when the document is delivered after all.

``<name>`` is the document's key reduced to ``[A-Za-z0-9._-]`` plus 16 hex digits of its
SHA-256, so two keys never share a name and no key can leave the folder.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path

import orjson

from leukofhir.batch.naming import safe_stem
from leukofhir.batch.store import Store

__all__ = ["DeadLetterFolder", "dead_letter_name", "our_outcome"]

BUNDLE_SUFFIX = ".bundle.json"
OUTCOME_SUFFIX = ".outcome.json"


def dead_letter_name(key: str) -> str:
    digest = hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()[:16]
    stem = key.removesuffix(BUNDLE_SUFFIX).rsplit("/", 1)[-1]
    return f"{safe_stem(stem)}_{digest}"


def our_outcome(reason: str, *, transient: bool) -> bytes:
    """An OperationOutcome that says why, for a dead letter the server sent none for."""
    issue = {
        "severity": "error",
        "code": "transient" if transient else "processing",
        "diagnostics": reason,
    }
    return orjson.dumps({"resourceType": "OperationOutcome", "issue": [issue]})


class DeadLetterFolder:
    def __init__(self, folder: Path, *, fsync: bool = False) -> None:
        self.folder = folder
        self._store = Store(folder, fsync=fsync)

    def write(self, key: str, document: bytes, outcome: bytes) -> str:
        """Both files (the outcome last); the name they share."""
        name = dead_letter_name(key)
        self._store.write(name + BUNDLE_SUFFIX, document)
        self._store.write(name + OUTCOME_SUFFIX, outcome)
        return name

    def remove(self, key: str) -> None:
        name = dead_letter_name(key)
        for suffix in (OUTCOME_SUFFIX, BUNDLE_SUFFIX):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.folder / (name + suffix))

"""Where the service's outputs go.  A sink is small on purpose: one method that delivers
one outcome's documents and says what it wrote, so that a FHIR-server sink (POST the
transaction Bundle, keep the response) can be added without touching the service.

* :class:`FolderSink` (the default): the batch layout under a folder
  (``processed/``, ``skipped/``, ``rejected/``; rejected messages kept byte for byte next
  to their OperationOutcome), every file written atomically.  Names are stable for the
  same message, so finishing a message again after a crash replaces files by the same bytes.
* :class:`StdoutSink`: every document as one NDJSON line on stdout.
"""

from __future__ import annotations

import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from leukofhir.batch.naming import output_base
from leukofhir.batch.store import Store, sweep_temporaries

__all__ = ["Delivery", "FolderSink", "Sink", "StdoutSink"]


@dataclass(frozen=True, slots=True)
class Delivery:
    key: str  # 16 hex digits, stable for the same message (and report)
    disposition: str  # processed | skipped | rejected
    control_id: str
    documents: tuple[tuple[str, bytes], ...]  # (file suffix, JSON bytes)
    raw: bytes = b""  # the message itself, kept for rejected ones
    raw_suffix: str = ".hl7"


class Sink(Protocol):
    def deliver(self, delivery: Delivery) -> tuple[str, ...]:
        """Write the documents (raising ``OSError`` when it cannot); names of what was
        written, for the journal."""
        ...

    def close(self) -> None: ...


class FolderSink:
    """Safe from several service processes at once: distinct names, atomic renames."""

    def __init__(self, root: Path, *, fsync: bool = False) -> None:
        root.mkdir(parents=True, exist_ok=True)
        sweep_temporaries(root)
        self._store = Store(root, fsync=fsync)

    def deliver(self, delivery: Delivery) -> tuple[str, ...]:
        base = output_base(delivery.disposition, delivery.control_id, delivery.key)
        names: list[str] = []
        if delivery.disposition == "rejected" and delivery.raw:
            names.append(base + delivery.raw_suffix)
            self._store.write(names[-1], delivery.raw)
        for suffix, data in delivery.documents:
            names.append(base + suffix)
            self._store.write(names[-1], data)
        return tuple(names)

    def close(self) -> None:
        pass


class StdoutSink:
    """One line per document; a lock keeps lines whole within a process, and a service
    with several processes is limited to one when it writes to stdout."""

    def __init__(self, stream: BinaryIO | None = None) -> None:
        self._stream = stream or sys.stdout.buffer
        self._lock = threading.Lock()

    def deliver(self, delivery: Delivery) -> tuple[str, ...]:
        with self._lock:
            for _suffix, data in delivery.documents:
                self._stream.write(data if data.endswith(b"\n") else data + b"\n")
            self._stream.flush()
        return tuple(f"stdout:{delivery.key}{suffix}" for suffix, _ in delivery.documents)

    def close(self) -> None:
        self._stream.flush()

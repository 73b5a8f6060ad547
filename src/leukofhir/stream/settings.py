"""What ``serve --publish`` and ``worker --nats`` agree on, light to import (no nats-py):
the stream's names and defaults, the broker URL check, the partition of a key, the
message id JetStream dedupes on, and the envelope a message travels in."""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

__all__ = [
    "Envelope",
    "StreamSettings",
    "message_id",
    "open_envelope",
    "partition_of",
    "shown_url",
    "wrap",
]

_SCHEMES = ("nats", "tls")


@dataclass(frozen=True, slots=True)
class StreamSettings:
    stream: str = "LEUKOFHIR"
    subject: str = ""  # partition K is the subject ``<subject>.K`` ("": ``leukofhir.cbc.K``)
    partitions: int = 16  # when the stream is created; afterwards the stream's own count
    consumer: str = "leukofhir"  # partition K's durable pull consumer: ``leukofhir-K``
    ack_wait: float = 30.0  # seconds before an unacknowledged message is delivered again
    batch: int = 32  # messages a consumer holds unacknowledged, per partition
    timeout: float = 5.0  # seconds for a PubAck (and for connecting)
    duplicate_window: float = 120.0  # seconds JetStream remembers a message id

    @property
    def subjects(self) -> str:
        """The partitions' subject prefix: ``<stream in lower case>.cbc`` unless told."""
        return self.subject or f"{self.stream.lower()}.cbc"


def check_url(url: str) -> str:
    """``nats://HOST:PORT`` (or ``tls://``); ValueError saying what is wrong."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme not in _SCHEMES or not parts.hostname or port is None:
        raise ValueError(
            f"{shown_url(url)!r} is not a NATS URL: nats://HOST:PORT (e.g. nats://127.0.0.1:4222)"
        )
    return url


def shown_url(url: str) -> str:
    """The URL without a user and password (for messages and logs)."""
    scheme, sep, rest = url.partition("://")
    return f"{scheme}{sep}{rest.rpartition('@')[2]}" if sep else url.rpartition("@")[2]


def partition_of(key: str, partitions: int) -> int:
    """The partition of a key (a patient's): the same key, the same partition."""
    return zlib.crc32(key.encode()) % partitions


def message_id(sender: str, control_id: str, sha256: str) -> str:
    """``Nats-Msg-Id``: the journal's identity of a message (MSH-3|MSH-4, MSH-10, content
    hash), escaped for a header; a re-publish within the duplicate window is dropped."""
    return "|".join(quote(part, safe="") for part in (sender, control_id, sha256))


@dataclass(frozen=True, slots=True)
class Envelope:
    format: str  # hl7v2 | fhir
    received: str  # ISO instant: Provenance.recorded, the same on every delivery
    data: bytes


def wrap(envelope: Envelope) -> bytes:
    """One JSON line (format, received), then the message as received."""
    head = {"v": 1, "format": envelope.format, "received": envelope.received}
    return json.dumps(head).encode() + b"\n" + envelope.data


def open_envelope(payload: bytes) -> Envelope:
    """ValueError when ``payload`` is not what :func:`wrap` makes."""
    head, sep, data = payload.partition(b"\n")
    try:
        fields = json.loads(head) if sep else None
    except ValueError:
        fields = None
    if not isinstance(fields, dict) or fields.get("v") != 1:
        raise ValueError("not a leukofhir stream message (no envelope)")
    return Envelope(str(fields["format"]), str(fields["received"]), data)

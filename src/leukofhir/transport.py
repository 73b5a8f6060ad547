"""The seam between receiving a message and processing it, small enough for a broker
adapter (Kafka, NATS JetStream) to implement; ``serve --publish`` and ``leukofhir worker``
use it with the JetStream adapter (:mod:`leukofhir.stream.jetstream`).

Without a broker a service process processes what it received itself: the listener stores
the message in the journal (:meth:`leukofhir.serve.journal.Journal.receive`) and the same
process's event loop processes it (:class:`leukofhir.serve.intake.Intake`).  With one, the
receiver publishes after the journal receipt and workers on other hosts consume, settle
against shared states (one transaction per message holding its patients) and ack::

    receiver: journal.receive ─► process (judge only) ─► transport.publish(key=patient)
              ─► journal: done (published) ─► ACK
    worker:   transport.receive ─► process ─► store.transaction(patients): settle, save,
              outputs written ─► commit ─► transport.ack

:class:`Transport`, what an adapter must give:

* ``publish(key, data)`` returns once the broker holds the message durably (Kafka: a
  producer with ``acks=all`` and the send's future resolved; JetStream: the PubAck).
  ``key`` is the patient's key (:func:`leukofhir.lifecycle.store.patient_key`, hex): Kafka's
  message key, or a JetStream subject token, so one patient's messages stay in one
  partition, in the order published.
* ``receive(limit, wait)`` gives at most ``limit`` deliveries, waiting at most ``wait``
  seconds for the first: in publish order within a key, also after a consumer died with
  deliveries unacknowledged (they come again before newer ones of their partition).
* ``ack(delivery)``: processed (outputs and state committed); it is not delivered again.
  A consumer acks each key's deliveries in order (Kafka commits an offset, which acks
  everything before it in the partition).  A delivery not acked (the worker died) is
  delivered again, to this consumer or another: at least once.  The worker makes doing a
  message again give what doing it once gave (:mod:`leukofhir.stream.worker`), and the
  per-patient lock of the state store keeps two workers that both hold a patient's
  messages (during a rebalance) from losing either's report.

What is tested: the contract (tests/test_transport.py) on an in-memory reference
implementation (the tests' ``MemoryTransport``) and on the JetStream adapter against a
nats-server on loopback; a worker loop over the in-memory one settling into a PostgreSQL
store while a zombie consumer replays a partition its owner still works on (the states
equal the sequential fold's); the JetStream adapter and ``serve --publish`` / ``worker``
end to end in tests/stream.  No Kafka adapter exists; one would pass the same contract
tests with its broker on loopback.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

__all__ = ["Delivery", "Transport"]


@dataclass(frozen=True, slots=True)
class Delivery:
    """One message handed to a consumer; ``token`` is the broker's handle for the ack
    (Kafka: the partition and offset; JetStream: the message)."""

    key: str
    data: bytes
    token: object


class Transport(Protocol):
    def publish(self, key: str, data: bytes) -> None: ...

    def receive(self, limit: int, wait: float) -> list[Delivery]: ...

    def ack(self, delivery: Delivery) -> None: ...

    def close(self) -> None: ...

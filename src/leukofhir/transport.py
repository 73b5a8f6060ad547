"""The seam between receiving a message and processing it, small enough for a broker
adapter (Kafka, NATS JetStream) to implement: **not used by** ``serve`` **yet**.

Today a service process processes what it received itself: the listener stores the
message in the journal (:meth:`leukofhir.serve.journal.Journal.receive`) and the same
process's event loop processes it (:class:`leukofhir.serve.intake.Intake`).  With a broker,
the receiver would publish after the journal receipt and workers on other hosts would
consume, settle against shared states (:class:`leukofhir.lifecycle.pgstore.PostgresStore`,
one transaction per message holding its patients) and ack::

    receiver: journal.receive ─► transport.publish(key=patient, data) ─► commit ACK
    worker:   transport.receive ─► process ─► store.transaction(patients): settle, save
              ─► outputs written ─► transport.ack

:class:`Transport`, what an adapter must give:

* ``publish(key, data)`` returns once the broker holds the message durably (Kafka: a
  producer with ``acks=all`` and the send's future resolved; JetStream: the PubAck).
  ``key`` is the patient's key (:func:`leukofhir.lifecycle.store.patient_key`, hex): Kafka's
  message key, or a JetStream subject token, so one patient's messages stay in one
  partition, in the order published.
* ``receive(limit, wait)`` gives at most ``limit`` deliveries, waiting at most ``wait``
  seconds for the first: in publish order within a key.
* ``ack(delivery)``: processed (outputs and state committed); it is not delivered again.
  A consumer acks each key's deliveries in order (Kafka commits an offset, which acks
  everything before it in the partition).  A delivery not acked (the worker died) is
  delivered again, to this consumer or another: at least once.  Settling a message twice
  changes no resource's content (LIFECYCLE.md, property 3), and the per-patient lock of the
  state store keeps two workers that both hold a patient's messages (during a rebalance)
  from losing either's report.

What is tested (tests/test_transport.py): the contract on an in-memory reference
implementation (the tests' ``MemoryTransport``), and a worker loop over it settling into a
PostgreSQL store, a consumer killed before its acks and its partition taken over by
another: the states equal the sequential fold's.  No Kafka or NATS adapter exists; an
adapter passes the same contract tests with its broker on loopback.
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

"""The transport seam (leukofhir.transport): its contract on an in-memory reference
implementation, which the JetStream adapter passes too (tests/stream for the rest of it),
and a worker loop over it that settles into a PostgreSQL store while a second consumer
replays a partition the first one still works on (a rebalance with a zombie): the states
equal the sequential fold's."""

from __future__ import annotations

import itertools
import threading
import time
import zlib
from collections.abc import Callable

import pytest

from leukofhir.lifecycle.settle import patients_of, settle_message
from leukofhir.lifecycle.store import patient_key
from leukofhir.pipeline import process
from leukofhir.transport import Delivery, Transport
from tests.lifecycle.streams import CONTEXT, canonical, patient_ids, sequential, stream


class Broker:
    """Partitioned logs with a committed offset each (Kafka's model), shared by consumers."""

    def __init__(self, partitions: int = 2) -> None:
        self.logs: list[list[tuple[str, bytes]]] = [[] for _ in range(partitions)]
        self.committed = [0] * partitions
        self.lock = threading.Condition()

    def partition(self, key: str) -> int:
        return zlib.crc32(key.encode()) % len(self.logs)


class MemoryTransport:
    """A consumer (and producer) on ``broker``, owning ``partitions`` (default all); it
    starts at their committed offsets, so what was not acked comes again."""

    def __init__(self, broker: Broker, partitions: list[int] | None = None) -> None:
        self.broker = broker
        self.owned = list(range(len(broker.logs))) if partitions is None else partitions
        with broker.lock:
            self.position = {p: broker.committed[p] for p in self.owned}

    def publish(self, key: str, data: bytes) -> None:
        with self.broker.lock:
            self.broker.logs[self.broker.partition(key)].append((key, data))
            self.broker.lock.notify_all()

    def receive(self, limit: int, wait: float) -> list[Delivery]:
        deadline = time.monotonic() + wait
        with self.broker.lock:
            while True:
                out: list[Delivery] = []
                for p in self.owned:
                    log = self.broker.logs[p]
                    while len(out) < limit and self.position[p] < len(log):
                        key, data = log[self.position[p]]
                        out.append(Delivery(key, data, (p, self.position[p])))
                        self.position[p] += 1
                left = deadline - time.monotonic()
                if out or left <= 0:
                    return out
                self.broker.lock.wait(left)

    def ack(self, delivery: Delivery) -> None:
        p, offset = delivery.token  # type: ignore[misc]
        with self.broker.lock:
            self.broker.committed[p] = max(self.broker.committed[p], offset + 1)

    def close(self) -> None:
        pass


Opener = Callable[[], Transport]
_STREAMS = itertools.count()


@pytest.fixture(params=["memory", "jetstream"])
def opened(request: pytest.FixtureRequest) -> Opener:
    """Opens transports (producers and consumers) on one broker, new for each test: the
    reference in memory, and the JetStream adapter on a nats-server on loopback (a stream
    of the test's own; a short ack wait)."""
    if request.param == "memory":
        broker = Broker()
        return lambda: MemoryTransport(broker)
    url = request.getfixturevalue("nats_url")
    from leukofhir.stream.jetstream import JetStreamTransport
    from leukofhir.stream.settings import StreamSettings

    number = next(_STREAMS)
    settings = StreamSettings(
        stream=f"CONTRACT{number}", subject=f"contract{number}", partitions=2, ack_wait=2.0
    )
    return lambda: JetStreamTransport(url, settings, consume=None)


def test_each_key_is_received_in_publish_order(opened: Opener) -> None:
    producer, consumer = opened(), opened()
    sent = [(f"k{i % 3}", f"m{i}".encode()) for i in range(30)]
    for key, data in sent:
        producer.publish(key, data)
    got: list[Delivery] = []
    while len(got) < len(sent) and (batch := consumer.receive(7, 2.0)):
        assert len(batch) <= 7
        got.extend(batch)
    for key in ("k0", "k1", "k2"):
        assert [d.data for d in got if d.key == key] == [data for k, data in sent if k == key]
    assert consumer.receive(1, 0.05) == []  # nothing more, after waiting
    producer.close()
    consumer.close()


def collect(consumer: Transport, limit: int, within: float = 2.0) -> list[Delivery]:
    """What ``consumer`` receives within ``within`` seconds (at most ``limit``): a broker
    may hand a consumer what it has in more than one piece."""
    got: list[Delivery] = []
    deadline = time.monotonic() + within
    while len(got) < limit and (left := deadline - time.monotonic()) > 0:
        got.extend(consumer.receive(limit - len(got), min(left, 0.2)))
    return got


def test_what_was_not_acked_is_delivered_again(opened: Opener) -> None:
    producer = opened()
    for i in range(6):
        producer.publish("k", f"m{i}".encode())
    first = opened()
    got = collect(first, 6)
    assert [d.data for d in got] == [f"m{i}".encode() for i in range(6)]
    for delivery in got[:4]:
        first.ack(delivery)
    first.close()  # died before acking the last two
    second = opened()
    assert [d.data for d in collect(second, 2, within=5.0)] == [b"m4", b"m5"]
    assert second.receive(6, 0.3) == []  # and nothing else
    second.close()
    producer.close()


def work(transport: Transport, url: str) -> None:
    """A worker: each delivery settled in one transaction of the state store, then acked."""
    from leukofhir.lifecycle.pgstore import PostgresStore

    store = PostgresStore(url)
    while batch := transport.receive(1, 0.2):
        for delivery in batch:
            for outcome in process(delivery.data, CONTEXT):
                with store.transaction(patients_of(outcome)):
                    store.save(settle_message(outcome, store.load, CONTEXT.rule_set)[1])
            transport.ack(delivery)
    store.close()


def test_workers_over_a_transport_with_a_zombie_consumer_lose_no_report(
    postgres_url: str,
) -> None:
    messages = stream()
    broker = Broker(partitions=2)
    producer = MemoryTransport(broker)
    for data in messages:
        [patient] = patient_ids([data])
        producer.publish(patient_key(patient).hex(), data)
    assert all(broker.logs)  # the patients are spread over both partitions
    consumers = [
        MemoryTransport(broker, [0]),
        MemoryTransport(broker, [1]),
        MemoryTransport(broker, [0]),  # took partition 0 over while its owner still works
    ]
    threads = [threading.Thread(target=work, args=(c, postgres_url)) for c in consumers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert broker.committed == [len(log) for log in broker.logs]
    from leukofhir.lifecycle.pgstore import PostgresStore

    store = PostgresStore(postgres_url)
    assert {p: canonical(store.load(p)) for p in patient_ids(messages)} == sequential(messages)
    store.close()

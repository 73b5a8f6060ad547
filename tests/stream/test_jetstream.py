"""The JetStream adapter beyond the transport contract (tests/test_transport.py): order
after a consumer died with messages in hand, dedupe by message id, the stream's own
partition count, and located errors for a broker that is not there or not set up."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from leukofhir.cli import main
from leukofhir.transport import Transport
from tests import natsserver
from tests.test_transport import collect

pytestmark = pytest.mark.skipif(bool(natsserver.unavailable()), reason=natsserver.unavailable())
_NAMES = itertools.count()

Opener = Callable[..., Transport]


@pytest.fixture
def opened(nats_url: str) -> Opener:
    """Opens transports on a stream of the test's own (one partition unless told)."""
    from leukofhir.stream.jetstream import JetStreamTransport
    from leukofhir.stream.settings import StreamSettings

    number = next(_NAMES)
    settings = StreamSettings(
        stream=f"ADAPTER{number}", subject=f"adapter{number}", partitions=1, ack_wait=1.0
    )

    def open_one(**options: object) -> Transport:
        return JetStreamTransport(nats_url, settings, consume=None, **options)  # type: ignore[arg-type]

    return open_one


def test_after_a_crash_the_unacknowledged_come_before_newer_messages(opened: Opener) -> None:
    producer = opened()
    for i in range(10):
        producer.publish("k", f"m{i:02d}".encode())
    first = opened()
    got = collect(first, 10, within=5.0)
    for delivery in got[:3]:
        first.ack(delivery)
    first.close()  # died with seven in hand
    for i in range(10, 15):
        producer.publish("k", f"m{i:02d}".encode())
    second = opened()
    later = collect(second, 12, within=8.0)
    assert [d.data for d in later] == [f"m{i:02d}".encode() for i in range(3, 15)]
    second.close()
    producer.close()


def test_one_message_id_published_twice_is_delivered_once(opened: Opener) -> None:
    producer = opened()
    producer.publish("k", b"one", "LAB|GEN|C1|abc")  # type: ignore[call-arg]
    producer.publish("k", b"one", "LAB|GEN|C1|abc")  # type: ignore[call-arg]  # a re-publish
    producer.publish("k", b"two", "LAB|GEN|C2|def")  # type: ignore[call-arg]
    consumer = opened()
    got = collect(consumer, 2)
    for one in got:
        consumer.ack(one)
    assert [d.data for d in got] == [b"one", b"two"]
    assert consumer.receive(1, 0.5) == []  # no second "one"
    consumer.close()
    producer.close()


def test_consumers_take_the_partition_count_of_the_stream(nats_url: str) -> None:
    from leukofhir.stream.jetstream import JetStreamTransport, UnavailableError
    from leukofhir.stream.settings import StreamSettings

    made = StreamSettings(stream="COUNTED", subject="counted", partitions=3)
    JetStreamTransport(nats_url, made).close()
    consumer = JetStreamTransport(nats_url, StreamSettings(stream="COUNTED"), create=False)
    assert (consumer.partitions, consumer.settings.subject) == (3, "counted")
    consumer.close()
    with pytest.raises(UnavailableError, match="partition 5 does not exist: stream COUNTED has 3"):
        JetStreamTransport(nats_url, StreamSettings(stream="COUNTED"), consume=[5])


def test_an_unreachable_broker_is_said_at_once() -> None:
    from leukofhir.stream.jetstream import JetStreamTransport, UnavailableError

    url = f"nats://127.0.0.1:{natsserver.free_port()}"
    started = time.monotonic()
    with pytest.raises(UnavailableError, match=f"cannot reach the NATS server at {url}"):
        JetStreamTransport(url)
    assert time.monotonic() - started < 2


def test_worker_errors_are_located_with_their_exit_codes(
    tmp_path: Path, nats_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    out = str(tmp_path / "out")
    assert main(["worker", "--nats", "http://127.0.0.1:4222", "--out", out]) == 2
    assert "--nats: 'http://127.0.0.1:4222' is not a NATS URL" in capsys.readouterr().err
    assert main(["worker", "--nats", "nats://user:secret@127.0.0.1:1", "--out", out]) == 3
    err = capsys.readouterr().err
    assert "cannot reach the NATS server at nats://127.0.0.1:1" in err
    assert "secret" not in err
    assert main(["worker", "--nats", nats_url, "--out", out, "--stream", "NOTYET"]) == 3
    assert "no stream NOTYET" in capsys.readouterr().err
    assert main(["worker", "--nats", nats_url, "--out", out, "--partition", "99"]) == 3

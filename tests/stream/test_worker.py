"""The worker's loop without a broker: a message delivered again, at any point of the
stream, after it was done or after the worker died inside its transaction, leaves the
outputs and the states of one run that did each message once."""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import pytest

from leukofhir.context import Settings
from leukofhir.lifecycle.state import PatientState
from leukofhir.lifecycle.store import MemoryStore, SqliteStore, StateStore
from leukofhir.stream.settings import Envelope, wrap
from leukofhir.stream.worker import Worker
from leukofhir.transport import Delivery
from tests.lifecycle.streams import canonical, patient_ids, sequential, stream
from tests.serve.helpers import outputs

RECEIVED = "2026-01-01T08:00:00+00:00"
MESSAGES = stream()[:18]


def delivery(data: bytes) -> Delivery:
    return Delivery("", wrap(Envelope("hl7v2", RECEIVED, data)), None)


def written(out: Path) -> dict[str, bytes]:
    return {name: (out / name).read_bytes() for name in outputs(out) if "states" not in name}


@pytest.fixture(scope="module")
def once(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    out = tmp_path_factory.mktemp("once")
    worker = Worker(MemoryStore(), out, Settings())
    for data in MESSAGES:
        worker.handle(delivery(data))
    return written(out)


@pytest.mark.parametrize("again", range(0, len(MESSAGES), 3))
def test_a_message_done_and_delivered_again_changes_nothing(
    tmp_path: Path, once: dict[str, bytes], again: int
) -> None:
    store = SqliteStore(tmp_path / "states.sqlite")
    worker = Worker(store, tmp_path, Settings())
    for index, data in enumerate(MESSAGES):
        assert worker.handle(delivery(data)) == "processed"
        if index == again:  # not acknowledged: it comes again (before the next ones)
            assert worker.handle(delivery(data)) == "again"
    assert written(tmp_path) == once
    assert {p: canonical(store.load(p)) for p in patient_ids(MESSAGES)} == sequential(MESSAGES)
    store.close()


class Dying:
    """A store whose ``dies``-th transaction does not commit: a worker killed after it
    wrote the message's outputs and marker, before the commit of its state."""

    def __init__(self, store: StateStore, dies: int) -> None:
        self.store, self.transactions, self.dies = store, 0, dies

    def load(self, patient: str) -> PatientState:
        return self.store.load(patient)

    def save(self, states: Mapping[str, PatientState]) -> None:
        self.store.save(states)

    @contextmanager
    def transaction(self, patients: Collection[str]) -> Iterator[None]:
        self.transactions += 1
        with self.store.transaction(patients):
            yield
            if self.transactions == self.dies:
                raise KeyboardInterrupt  # (as good as SIGKILL: rolled back)

    def close(self) -> None:
        self.store.close()


def test_a_worker_dying_in_its_transaction_leaves_nothing_to_regret(
    tmp_path: Path, once: dict[str, bytes]
) -> None:
    store = SqliteStore(tmp_path / "states.sqlite")
    dying = Dying(store, dies=7)  # the seventh message's
    worker = Worker(dying, tmp_path, Settings())
    for data in MESSAGES[:6]:
        worker.handle(delivery(data))
    with pytest.raises(KeyboardInterrupt):
        worker.handle(delivery(MESSAGES[6]))  # its outputs written, its state not
    assert len([n for n in written(tmp_path) if n.startswith(".settled/")]) == 7
    worker = Worker(store, tmp_path, Settings())  # started again
    for data in MESSAGES[6:]:
        worker.handle(delivery(data))
    assert written(tmp_path) == once
    assert {p: canonical(store.load(p)) for p in patient_ids(MESSAGES)} == sequential(MESSAGES)
    store.close()


def test_with_a_fhir_server_a_message_delivered_again_changes_nothing_there(
    tmp_path: Path,
) -> None:
    """``worker --fhir-base``: each Bundle sent before the ack; a redelivered message sends
    the outputs it wrote the first time, and the server holds what one plain POST of each
    output gives."""
    from leukofhir.delivery.now import DeliveryNow
    from leukofhir.delivery.options import DeliveryOptions
    from tests.delivery.wiring import plain_state
    from tests.fhirserver import canonical, require_server, running_server

    require_server()
    with running_server(tmp_path / "srv") as server:
        fhir = DeliveryNow(DeliveryOptions(base=server.base))
        worker = Worker(MemoryStore(), tmp_path / "out", Settings(), fhir=fhir)
        for index, data in enumerate(MESSAGES[:9]):
            worker.handle(delivery(data))
            if index == 3:
                assert worker.handle(delivery(data)) == "again"
        fhir.close()
        assert set(fhir.counts) == {"delivered"}
        state = canonical(server.dump())
        bundles = sorted(
            (tmp_path / "out").rglob("*.bundle.json"), key=lambda p: p.stat().st_mtime_ns
        )
        assert state == plain_state(server, [p.read_bytes() for p in bundles])

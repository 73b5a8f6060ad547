"""``leukofhir worker``: messages from the stream, each in order of its partition:

    receive ─► process (pure core) ─► settle: one state-store transaction for its patients
            ─► outputs written (folder; with --fhir-base also delivered) ─► ack

A message is acknowledged only once its state and outputs are committed, so a worker that
dies leaves it unacknowledged and JetStream delivers it again (at least once).  Doing a
message again must give what doing it once gave.  The state does: folding a report the
state already holds changes no state (LIFECYCLE.md, property 3).  Its Bundle does not: a
Flag the first settling changed is unchanged the second time, so the Bundle made again
leaves it out (right for a FHIR server that has it, wrong as the message's output file).
So the outputs are written *inside* the state transaction, before its commit, then a
marker listing them (``OUT/.settled/<key>.json``), and a delivery whose marker exists keeps
the outputs it lists (and sends those to the FHIR server), whatever settling it again
gives:

* died before the marker: the state was not committed either; the message is settled
  again against the same state and writes the same bytes;
* died after the marker: the outputs are complete and stay; the state is saved again (the
  same state if it was committed, the new one if the commit did not happen).

Outputs are named by sender, MSH-10 and content and recorded at the instant the service
received the message: the names and bytes of the in-process service.  Workers that take
over each other's partitions share OUT (and the state store).

A fault of the core on one message (an exception out of :func:`~leukofhir.pipeline.process`)
is logged with where it was raised and the message is acknowledged: it would fail the same
way every time.  Anything else (the state store, the output folder, the FHIR server
refusing our token) stops the worker with the message unacknowledged: exit 3, and the
message comes again when the cause is mended.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from leukofhir.batch.store import Store
from leukofhir.context import Settings
from leukofhir.delivery.now import DeliveryNow
from leukofhir.lifecycle.settle import patients_of, settle_message
from leukofhir.lifecycle.store import StateStore
from leukofhir.logs import get_logger
from leukofhir.pipeline import process
from leukofhir.serve.fault import fault_of
from leukofhir.serve.header import NO_HEADER, content_hash, read_header
from leukofhir.serve.sink import FolderSink
from leukofhir.serve.work import BUNDLE_SUFFIX, Job, Processor, deliver, result_of
from leukofhir.stream.settings import open_envelope
from leukofhir.transport import Delivery, Transport

if TYPE_CHECKING:
    from leukofhir.stopping import StopFlag

__all__ = ["StopWorker", "Worker"]

log = get_logger("leukofhir.worker")
_RANK = {"processed": 0, "skipped": 1, "rejected": 2}


class StopWorker(Exception):  # noqa: N818 - a stop, not an error of the message
    """The worker cannot go on (the message stays unacknowledged)."""


@dataclass(slots=True)
class Counts:
    messages: int = 0
    failed: int = 0


class Worker:
    def __init__(
        self,
        store: StateStore,
        out: Path,
        settings: Settings,
        *,
        fhir: DeliveryNow | None = None,
    ) -> None:
        self.store = store
        self.out = out
        self.sink = FolderSink(out)
        self._markers = Store(out)
        self.fhir = fhir
        self.counts = Counts()
        self._processor = Processor(settings)

    def run(
        self, transport: Transport, stop: StopFlag, *, batch: int = 32, idle: float = 0.25
    ) -> None:
        """Deliveries from ``transport``, each handled then acknowledged, until ``stop`` is
        set (between two messages)."""
        while not stop.is_set():
            for delivery in transport.receive(batch, idle):
                self.handle(delivery)
                transport.ack(delivery)
                if stop.is_set():
                    return  # the rest were not acked: they come again

    def handle(self, delivery: Delivery) -> str:
        """Process, settle and write one delivery; its outcome."""
        started = time.perf_counter()
        self.counts.messages += 1
        try:
            envelope = open_envelope(delivery.data)
        except ValueError:
            log.error("not_a_message", key=delivery.key, bytes=len(delivery.data))
            self.counts.failed += 1
            return "failed"
        header = read_header(envelope.data) if envelope.format == "hl7v2" else NO_HEADER
        job = Job(
            0,
            envelope.format,
            envelope.received,
            envelope.data,
            header.sender,
            header.control_id,
            content_hash(envelope.data),
        )
        context = self._processor.context(job)
        try:
            outcomes = list(process(job.data, context, input_format=job.format))
        except Exception as exc:  # a fault of the core on this message
            fault = fault_of(exc)
            log.error(
                "processing_failed",
                control_id=job.control_id,
                error=fault.error,
                where=fault.where,
            )
            self.counts.failed += 1
            return "failed"
        patients = list(dict.fromkeys(p for o in outcomes for p in patients_of(o)))
        marker = f".settled/{job.key(0)[:2]}/{job.key(0)}.json"
        with self.store.transaction(patients):
            settled = []
            for one in outcomes:
                done, states = settle_message(one, self.store.load, context.rule_set)
                if states:
                    self.store.save(states)
                settled.append(done)
            results = [result_of(o) for o in settled]
            outcome = max(
                (r.disposition for r in results), key=_RANK.__getitem__, default="rejected"
            )
            names = self._written(marker)
            if names is None:
                names = list(deliver(self.sink, job, results))
                self._markers.write(marker, json.dumps(names).encode())
            else:
                outcome = "again"  # done before: its outputs stay as they are
        if self.fhir is not None:
            self._send([n for n in names if n.endswith(BUNDLE_SUFFIX)])
        log.info(
            "message",
            control_id=job.control_id,
            facility=header.facility,
            outcome=outcome,
            ms=round((time.perf_counter() - started) * 1000, 2),
        )
        return outcome

    def _written(self, marker: str) -> list[str] | None:
        """The outputs of a message done before (None: not done)."""
        try:
            return [str(name) for name in json.loads((self.out / marker).read_bytes())]
        except FileNotFoundError:
            return None

    def _send(self, names: list[str]) -> None:
        assert self.fhir is not None
        for name in names:
            data = (self.out / name).read_bytes()
            self.fhir.send(name.removesuffix(BUNDLE_SUFFIX), data)
            if self.fhir.stopped:
                raise StopWorker(f"FHIR delivery stopped: {self.fhir.stopped}")

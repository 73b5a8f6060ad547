"""The lifecycle in the service: the patients' states live in the journal, each message's
new states are committed with its outcome, and messages of one patient settled at the same
time by two service processes are serialised (the later one is settled again)."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

from leukofhir.context import Settings
from leukofhir.lifecycle.settle import settle_message
from leukofhir.lifecycle.state import WINDOW, PatientState
from leukofhir.lifecycle.store import MemoryStore
from leukofhir.pipeline import process
from leukofhir.serve.journal import Arrival, Completion, Journal
from leukofhir.serve.states import PatientStates
from leukofhir.serve.work import Job, Processed, Processor
from tests.conftest import ROOT, make_context

sys.path.insert(0, str(ROOT / "benchmarks"))

from serve_load import Sender, Server, generate_messages

PATIENTS, DAYS = 6, 50


def in_order(messages: list[bytes]) -> dict[str, PatientState]:
    context, store = make_context(), MemoryStore()
    patients: set[str] = set()
    for data in messages:
        for outcome in process(data, context):
            _, states = settle_message(outcome, store.load, context.rule_set)
            store.save(states)
            patients.update(states)
    return {patient: store.load(patient) for patient in patients}


def summary(state: PatientState) -> tuple[object, ...]:
    """What must not depend on which process settled what: the reports kept, the
    versions remembered, and the Flags as written."""
    return (
        [r.report for r in state.reports],
        sorted(key for key, _ in state.versions),
        sorted((f.identifier, f.status, f.digest) for f in state.flags),
    )


def test_two_processes_four_senders_one_state_per_patient(tmp_path: Path) -> None:
    messages = generate_messages(PATIENTS * DAYS, 21, patients=PATIENTS)
    out = tmp_path / "out"
    with Server(out, "--workers", "2", "--http", "off") as server:
        # every patient's daily CBCs spread over four connections to two processes
        senders = [
            Sender(lambda: server.ports["mllp"], messages[i::4], seed=i, chaos=0.0)
            for i in range(4)
        ]
        deadline = time.monotonic() + 180

        async def send() -> None:
            await asyncio.gather(*(sender.run(deadline) for sender in senders))

        asyncio.run(send())
        assert server.stop() == 0
    log = server.stderr.read_text()
    assert "Traceback" not in log
    print("settled again:", log.count("settled_again"))
    expected = in_order(messages)
    journal = Journal(out)
    try:
        assert journal.counts() == {"processed": PATIENTS * DAYS}
        for patient, state in expected.items():
            stored = journal.states.load(patient)
            assert len(stored.reports) == WINDOW  # no report lost to a concurrent write
            assert summary(stored) == summary(state)
    finally:
        journal.close()


def _completion(processed: Processed) -> Completion:
    return Completion(processed.id, "processed", "AA", b"ack", changes=processed.changes)


def test_a_message_settled_against_a_state_changed_meanwhile_is_settled_again(
    tmp_path: Path,
) -> None:
    """Two service processes (two journal connections) settle a message of the same patient
    at the same time: the second commit finds the patient changed, leaves its message out,
    and the message settled again gives the state of both, in either order."""
    first, second = generate_messages(2 * 3, 4, patients=3)[0::3]  # one patient, two days
    one, two = Journal(tmp_path), Journal(tmp_path)
    try:
        entries = one.receive(
            [
                Arrival("LAB", str(n), str(n), "hl7v2", "mllp", m)
                for n, m in enumerate((first, second))
            ],
            "2026-01-01T00:00:00+00:00",
        )
        jobs = [
            Job(e.id, "hl7v2", e.received, m) for e, m in zip(entries, (first, second), strict=True)
        ]
        processor = Processor(Settings())
        mine, theirs = PatientStates(one.states), PatientStates(two.states)
        late = processor.run_one(jobs[0], mine)  # settled against the empty state
        early = processor.run_one(jobs[1], theirs)  # also against the empty state
        assert two.complete([_completion(early)], "2026-01-01T00:00:01+00:00") == []
        theirs.committed()
        assert one.complete([_completion(late)], "2026-01-01T00:00:01+00:00") == [late.id]
        mine.committed()
        again = processor.run_one(jobs[0], mine)
        assert one.complete([_completion(again)], "2026-01-01T00:00:02+00:00") == []
        (patient,) = again.changes.states
        both = in_order([second, first])[patient]
        assert summary(one.states.load(patient)) == summary(both)
        assert len(one.states.load(patient).reports) == 2
    finally:
        one.close()
        two.close()

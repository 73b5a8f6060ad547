"""Interleaved daily reports of a few patients, and the states one process settling them
in order leaves: the reference of the tests that settle them concurrently (PostgreSQL,
the transport seam) or across runs (``replay --state``)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from leukofhir.lifecycle.settle import patients_of, settle_message
from leukofhir.lifecycle.state import PatientState
from leukofhir.lifecycle.store import MemoryStore
from leukofhir.pipeline import process
from tests.conftest import make_context
from tests.lifecycle.sequences import Version, hl7

CONTEXT = make_context()
PATIENTS = ("P1", "P2", "P3")
WBC = ("6.2", "3.1", "2.4", "1.6", "4.6", "5.0", "6.1", "2.2", "5.5", "5.9", "6.3", "3.0")
ANC = ("3.0", "1.1", "0.7", "0.3", "1.6", "2.0", "2.9", "0.6", "2.5", "2.8", "3.1", "1.2")


def stream() -> list[bytes]:
    """Each patient's daily reports, a preliminary then a final, the patients interleaved
    (the order one lab would send them in)."""
    return [
        hl7(patient, Version(day, status, WBC[day], ANC[day], sent_hours=2 + 3 * step))
        for day in range(len(WBC))
        for step, status in enumerate(("P", "F"))
        for patient in PATIENTS
    ]


def sequential(messages: list[bytes]) -> dict[str, PatientState]:
    """Each patient's state after one process settled ``messages`` in order."""
    store = MemoryStore()
    for data in messages:
        for outcome in process(data, CONTEXT):
            store.save(settle_message(outcome, store.load, CONTEXT.rule_set)[1])
    return {patient: canonical(store.load(patient)) for patient in patient_ids(messages)}


def canonical(state: PatientState) -> PatientState:
    """``state`` with its Flag records in identifier order: the order they were first
    written in depends on the order the reports arrived in, their content does not."""
    return replace(state, flags=tuple(sorted(state.flags, key=lambda flag: flag.identifier)))


def patient_ids(messages: list[bytes]) -> list[str]:
    outcomes = (outcome for data in messages for outcome in process(data, CONTEXT))
    return list(dict.fromkeys(p for outcome in outcomes for p in patients_of(outcome)))


def write(folder: Path, messages: list[bytes]) -> list[Path]:
    folder.mkdir(exist_ok=True)
    paths = [folder / f"m{index:03d}.hl7" for index in range(len(messages))]
    for path, data in zip(paths, messages, strict=True):
        path.write_bytes(data)
    return paths

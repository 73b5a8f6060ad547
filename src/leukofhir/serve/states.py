"""Patients' lifecycle states in the service: kept in the journal, settled per message,
committed with the message's outcome, serialised per patient across service processes.

Each service process reads a patient's state from the journal (:class:`StateTable`), plus
what it settled itself and has not committed yet (the next group commit: two messages of
one patient in one turn of the loop follow each other).  A message remembers the stored
bytes it read for each patient; the journal commits its outcome and new states only if
those bytes are still there (:meth:`leukofhir.serve.journal.Journal.complete`).  When another
service process changed the patient meanwhile, the message is settled again against the
new state (optimistic concurrency: rare, and never two states for one patient)."""

from __future__ import annotations

from dataclasses import dataclass, field

from leukofhir.lifecycle.settle import settle_message
from leukofhir.lifecycle.state import PatientState
from leukofhir.lifecycle.store import StateTable
from leukofhir.pipeline import MessageOutcome
from leukofhir.rules import RuleSet

__all__ = ["Changes", "PatientStates"]


@dataclass(slots=True)
class Changes:
    """What settling one message read and wrote."""

    read: dict[str, bytes | None] = field(default_factory=dict)  # bytes stored when read
    states: dict[str, PatientState] = field(default_factory=dict)  # the new states


class PatientStates:
    def __init__(self, table: StateTable) -> None:
        self.table = table
        self._uncommitted: dict[str, tuple[bytes, PatientState]] = {}

    def settle(
        self, outcomes: list[MessageOutcome], rule_set: RuleSet, *, keep: bool = True
    ) -> tuple[list[MessageOutcome], Changes]:
        """``outcomes`` (of one message or body) settled in order; with ``keep``, their new
        states are seen by the next messages of this process until :meth:`committed`."""
        changes = Changes()

        def load(patient: str) -> PatientState:
            if patient in changes.states:
                return changes.states[patient]
            stored, state = self._uncommitted.get(patient) or self.table.read(patient)
            changes.read.setdefault(patient, stored)
            return state

        settled = []
        for outcome in outcomes:
            done, states = settle_message(outcome, load, rule_set)
            changes.states.update(states)
            settled.append(done)
        if keep:
            for patient, state in changes.states.items():
                self._uncommitted[patient] = (self.table.stored(patient, state), state)
        return settled, changes

    def committed(self) -> None:
        """The group commit is done (or failed): the journal is the truth again."""
        self._uncommitted.clear()

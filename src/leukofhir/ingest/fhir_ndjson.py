"""NDJSON (one resource per line, as bulk data exports write it) grouped in bounded memory.

The reader sees each line once and keeps only a window of recent resources, so memory
does not grow with the file.  The policy, with ``WINDOW`` = 1000 lines and
``MAX_GROUP`` = 200 Observations:

- consecutive Observation lines with the same subject + effective time + specimen
  form one *run*; a line with another key, or the ``MAX_GROUP``-th Observation, closes
  it.  A closed run is still held for ``WINDOW`` lines, then it becomes a report;
- a DiagnosticReport line (or a panel Observation with ``hasMember``) takes the
  Observations it references that are still held (a run's members, open or closed)
  and waits for the others: an Observation line whose ``Observation/id`` it awaits
  joins it.  It becomes a report as soon as every reference has arrived, or
  ``WINDOW`` lines after its own line, the missing references then reported as
  warnings;
- a Patient line is remembered (the last ``MAX_PATIENTS``) to give the patient's
  sex to the reports that follow it; other resource types are passed over.

So an Observation can join a report only when it stands within ``WINDOW`` lines of
it: sort an export by patient and time, or put each DiagnosticReport near its
results, as bulk exports by patient do.  Lines are numbered from 1; a resource on
line 7 is located as ``$ndjson[7]`` (its elements as ``$ndjson[7].valueQuantity``).
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any

from leukofhir.errors import ErrorCode, Issue, Location, warning
from leukofhir.ingest.fhir_group import is_panel, loose_key
from leukofhir.ingest.fhir_index import Entry, as_dict, as_list, as_str, shown, type_id
from leukofhir.ingest.fhir_unit import Group

__all__ = ["MAX_GROUP", "MAX_PATIENTS", "WINDOW", "NdjsonGrouper"]

WINDOW = 1000
MAX_GROUP = 200
MAX_PATIENTS = 10_000


@dataclass(slots=True, eq=False)
class _Waiting:
    """A report header and the ``Observation/id`` references it still waits for."""

    group: Group
    line: int
    pending: dict[str, str] = field(default_factory=dict)  # Type/id → where it is referenced


class NdjsonGrouper:
    """Feed it entries line by line; it hands back the groups that are complete."""

    def __init__(self, window: int = WINDOW, max_group: int = MAX_GROUP) -> None:
        self.window = window
        self.max_group = max_group
        self.patients: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._waiting: dict[int, _Waiting] = {}  # by id, in order of their lines
        self._awaited: dict[str, _Waiting] = {}  # Observation/id → the header awaiting it
        self._run: Group | None = None
        self._run_key: tuple[str, str, str] | None = None
        self._closed: deque[tuple[int, Group]] = deque()  # (line closed, run)
        self._held: dict[str, Group] = {}  # Observation/id → the run holding it

    # --- input ------------------------------------------------------------------------------

    def remember_patient(self, resource: dict[str, Any]) -> None:
        if key := as_str(resource.get("id")):
            self.patients[f"Patient/{key}"] = resource
            self.patients.move_to_end(f"Patient/{key}")
            while len(self.patients) > MAX_PATIENTS:
                self.patients.popitem(last=False)

    def patient_of(self, subject: dict[str, Any], _entry: Entry) -> dict[str, Any] | None:
        key = type_id(as_str(subject.get("reference")))
        return self.patients.get(key) if key else None

    def add(self, entry: Entry) -> list[Group]:
        """An Observation or DiagnosticReport line; the groups it completes."""
        done: list[Group] = []
        line = entry.position
        waiting = self._awaited.pop(entry.key, None) if entry.key else None
        if waiting is not None:
            waiting.pending.pop(entry.key, None)
            self._attach(waiting, entry)
            if not waiting.pending:
                done.append(self._finish(waiting))
        elif entry.resource_type == "DiagnosticReport" or is_panel(entry):
            waiting = _Waiting(Group(entry, [], first_line=line), line)
            self._take(waiting, entry, "result" if not is_panel(entry) else "hasMember")
            if waiting.pending:
                self._waiting[id(waiting)] = waiting
            else:
                done.append(self._finish(waiting))
        else:
            self._hold(entry)
        return done + self.expire(line)

    def expire(self, line: int) -> list[Group]:
        """The groups whose window has passed at ``line``."""
        done: list[Group] = []
        while self._closed and self._closed[0][0] + self.window <= line:
            done.extend(self._release(self._closed.popleft()[1]))
        for waiting in list(self._waiting.values()):
            if waiting.line + self.window > line:
                break
            done.append(self._finish(waiting))
        return done

    def finish(self) -> list[Group]:
        """Everything still held, at the end of the input, in order of first line."""
        done = [self._finish(waiting) for waiting in list(self._waiting.values())]
        self._close_run()
        while self._closed:
            done.extend(self._release(self._closed.popleft()[1]))
        return sorted(done, key=lambda group: group.first_line)

    # --- runs -------------------------------------------------------------------------------

    def _hold(self, entry: Entry) -> None:
        key = loose_key(entry.resource)
        run = self._run
        if run is None or key != self._run_key or len(run.members) >= self.max_group:
            self._close_run()
            run = self._run = Group(None, [], first_line=entry.position)
            self._run_key = key
        run.members.append(entry)
        if entry.key:
            self._held[entry.key] = run

    def _close_run(self) -> None:
        if self._run is not None:
            self._closed.append((self._last_line(self._run), self._run))
            self._run, self._run_key = None, None

    @staticmethod
    def _last_line(group: Group) -> int:
        return group.members[-1].position if group.members else group.first_line

    def _release(self, run: Group) -> list[Group]:
        for member in run.members:
            if self._held.get(member.key) is run:
                del self._held[member.key]
        if not run.members:  # every member was taken by a report
            return []
        run.first_line = run.members[0].position
        return [run]

    # --- report headers ---------------------------------------------------------------------

    def _take(self, waiting: _Waiting, holder: Entry, element: str) -> None:
        """The references of ``holder.element``: held ones join now, others are awaited."""
        for number, ref in enumerate(as_list(holder.resource.get(element))):
            where = f"{holder.path}.{element}[{number}]"
            reference = as_str(as_dict(ref).get("reference")).strip()
            if reference.startswith("#"):
                if (inner := (holder.container or holder).contained.get(reference[1:])) is not None:
                    self._attach(waiting, inner)
                else:
                    waiting.group.issues.append(_missing(shown(reference), where))
                continue
            key = type_id(reference)
            if not key.startswith("Observation/"):
                waiting.group.issues.append(_missing(shown(reference), where))
            elif (run := self._held.pop(key, None)) is not None:
                member = next(m for m in run.members if m.key == key)
                run.members.remove(member)
                self._attach(waiting, member)
            elif key in self._awaited:
                waiting.group.issues.append(_missing(reference, where, duplicate=True))
            else:
                waiting.pending[key] = where
                self._awaited[key] = waiting

    def _attach(self, waiting: _Waiting, entry: Entry) -> None:
        if is_panel(entry):
            self._take(waiting, entry, "hasMember")
        else:
            waiting.group.members.append(entry)

    def _finish(self, waiting: _Waiting) -> Group:
        self._waiting.pop(id(waiting), None)
        for key, where in waiting.pending.items():
            if self._awaited.get(key) is waiting:
                del self._awaited[key]
            waiting.group.issues.append(_missing(key, where, window=self.window))
        waiting.pending.clear()
        return waiting.group


def _missing(reference: str, where: str, *, duplicate: bool = False, window: int = 0) -> Issue:
    if duplicate:
        text = f"{reference} is already used by another report; it is evaluated once"
    elif window:
        text = (
            f"{reference} did not come within {window} lines of its report; that result is"
            " not read (keep an NDJSON report near its results)"
        )
    else:
        text = f"{reference} is not in the input; that result is not read"
    return warning(
        ErrorCode.SEGMENT_SEQUENCE,
        text,
        Location(expression=where),
        fhir_type="duplicate" if duplicate else "not-found",
    )

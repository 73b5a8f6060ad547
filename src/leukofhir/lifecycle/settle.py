"""A message's Bundles once the lifecycle has spoken: each report's draft (from the pure
core) folded into its patient's state.

* :func:`settle` / :func:`settle_alone`: one report, against a state or an empty one;
* :func:`settle_message`: every report of a message, with the notes the lifecycle adds
  (a superseded version, withdrawn results, a report too old to change any Flag), the
  new states to save, and the message's outcome with its settled Bundles.  A message
  whose every report is superseded is *skipped*: it writes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from leukofhir.emit.bundle import Draft, finish
from leukofhir.emit.datatypes import Json
from leukofhir.errors import ErrorCode, Issue, information, warning
from leukofhir.lifecycle.fold import Writes, fold
from leukofhir.lifecycle.state import WINDOW, PatientState
from leukofhir.pipeline import Disposition, MessageOutcome

__all__ = ["settle", "settle_alone", "settle_message"]

_EMPTY = PatientState()


def settle(draft: Draft, state: PatientState) -> tuple[Json | None, Writes, PatientState]:
    """(the Bundle, or None for a superseded version; the writes; the new state)."""
    if draft.facts is None:  # no patient: no history to fold
        writes, new_state = Writes(), state
    else:
        writes, new_state = fold(state, draft.facts, draft.rule_set)
    return finish(draft, writes), writes, new_state


def settle_alone(draft: Draft) -> Json:
    bundle, _, _ = settle(draft, _EMPTY)
    assert bundle is not None  # nothing supersedes a report in an empty state
    return bundle


def settle_message(
    outcome: MessageOutcome, load: Callable[[str], PatientState]
) -> tuple[MessageOutcome, dict[str, PatientState]]:
    """``outcome`` with its Bundles settled against the patients' states (``load`` gives
    a patient's state), and the new state of every patient it touched (to save with the
    outcome, atomically)."""
    if not outcome.reports:
        return outcome, {}
    states: dict[str, PatientState] = {}
    bundles: list[Json | None] = []
    notes: list[Issue] = []
    for report in outcome.reports:
        draft = report.draft
        patient = draft.facts.patient if draft.facts is not None else ""
        state = states.get(patient) or (load(patient) if patient else _EMPTY)
        bundle, writes, new_state = settle(draft, state)
        if patient:
            states[patient] = new_state
        bundles.append(bundle)
        notes.extend(_notes(report.cbc.report.location, draft, writes))
    disposition = outcome.disposition
    if all(bundle is None for bundle in bundles):
        disposition = Disposition.SKIPPED
    settled = replace(
        outcome,
        disposition=disposition,
        issues=(*outcome.issues, *notes),
        settled=tuple(bundles),
    )
    return settled, states


def _notes(where: object, draft: Draft, writes: Writes) -> list[Issue]:
    facts = draft.facts
    if facts is None:
        return []
    notes: list[Issue] = []
    if writes.superseded_by is not None:
        notes.append(
            information(
                ErrorCode.ACCEPTED,
                f"{where}: this version ({facts.version.label}) of report {facts.report} is"
                f" older than the version already applied ({writes.superseded_by.label});"
                " superseded: none of its results is written",
                fhir_type="business-rule",
            )
        )
    if writes.withdrawn:
        codes = ", ".join(result.code.rpartition("|")[2] for result in writes.withdrawn)
        notes.append(
            warning(
                ErrorCode.ACCEPTED,
                f"{where}: results of the earlier version of report {facts.report} are not in"
                f" this one ({codes}); they are written as entered-in-error",
                fhir_type="business-rule",
            )
        )
    if writes.frozen:
        notes.append(
            information(
                ErrorCode.ACCEPTED,
                f"{where}: collected before the reports the patient's standing Flags are kept"
                f" for (the latest {WINDOW}); its results are written, no Flag is changed",
                fhir_type="business-rule",
            )
        )
    return notes

"""A message's Bundles once the lifecycle has spoken: each report's draft (from the pure
core) folded into its patient's state.

* :func:`settle` / :func:`settle_alone`: one report, against a state or an empty one;
* :func:`settle_drafts`: the reports of a message, with the notes the lifecycle adds (a
  superseded version, withdrawn results, a report too old to change any Flag) and the
  new states to save (a batch parent finishes them as bytes, from packed drafts);
* :func:`settle_message`: the same for a whole :class:`MessageOutcome`, which comes back
  with its settled Bundles.  A message whose every report is superseded is *skipped*:
  it writes nothing;
* :func:`patients_of`: the patients a message's settling reads and writes (what a store's
  ``transaction`` holds).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

from leukofhir.emit.bundle import Draft, finish
from leukofhir.emit.datatypes import Json
from leukofhir.errors import ErrorCode, Issue, information, warning
from leukofhir.lifecycle.fold import Writes, fold
from leukofhir.lifecycle.state import WINDOW, PatientState
from leukofhir.pipeline import Disposition, MessageOutcome
from leukofhir.rules import RuleSet

__all__ = ["patients_of", "settle", "settle_alone", "settle_drafts", "settle_message"]

_EMPTY = PatientState()


def settle(draft: Draft, state: PatientState, rule_set: RuleSet) -> tuple[Writes, PatientState]:
    """(the writes of ``draft``'s report given the patient's ``state``; the new state)."""
    if draft.facts is None:  # no patient: no history to fold
        return Writes(), state
    return fold(state, draft.facts, rule_set)


def settle_alone(draft: Draft, rule_set: RuleSet) -> Json:
    """The Bundle as it is for a patient without earlier reports."""
    bundle = finish(draft, settle(draft, _EMPTY, rule_set)[0], rule_set)
    assert bundle is not None  # nothing supersedes a report in an empty state
    return bundle


def settle_drafts(
    drafts: Sequence[Draft], load: Callable[[str], PatientState], rule_set: RuleSet
) -> tuple[list[Writes], list[Issue], dict[str, PatientState]]:
    """The reports of one message folded in order into their patients' states (``load``
    gives a patient's state): the writes of each, the notes they add, the new states."""
    states: dict[str, PatientState] = {}
    writes: list[Writes] = []
    notes: list[Issue] = []
    for draft in drafts:
        patient = draft.facts.patient if draft.facts is not None else ""
        state = states.get(patient) or (load(patient) if patient else _EMPTY)
        written, new_state = settle(draft, state, rule_set)
        if patient:
            states[patient] = new_state
        writes.append(written)
        notes.extend(_notes(draft, written))
    return writes, notes, states


def settle_message(
    outcome: MessageOutcome, load: Callable[[str], PatientState], rule_set: RuleSet
) -> tuple[MessageOutcome, dict[str, PatientState]]:
    """``outcome`` with its Bundles settled against the patients' states, and the new state
    of every patient it touched (to save with the outcome, atomically).  A message whose
    every report is superseded is skipped: it writes nothing."""
    if not outcome.reports:
        return outcome, {}
    drafts = [report.draft for report in outcome.reports]
    writes, notes, states = settle_drafts(drafts, load, rule_set)
    bundles = tuple(finish(d, w, rule_set) for d, w in zip(drafts, writes, strict=True))
    settled = replace(
        outcome,
        disposition=Disposition.SKIPPED if all(b is None for b in bundles) else outcome.disposition,
        issues=(*outcome.issues, *notes),
        settled=bundles,
    )
    return settled, states


def patients_of(outcome: MessageOutcome) -> list[str]:
    """The patients of ``outcome``'s reports, each once, in report order."""
    patients = (r.draft.facts.patient for r in outcome.reports if r.draft.facts is not None)
    return list(dict.fromkeys(p for p in patients if p))


def _notes(draft: Draft, writes: Writes) -> list[Issue]:
    facts, where = draft.facts, draft.label
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

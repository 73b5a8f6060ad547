"""The lifecycle in a batch: workers process, the parent settles, in input order.

A worker cannot settle a processed message: its Bundles depend on the patients' earlier
reports, which other workers may be processing.  It hands the parent an
:class:`Unsettled` message instead (the reports' drafts packed as JSON bytes, its issues,
what names its outputs), and writes nothing for it.  The parent takes the results in the
order the files were handed out, folds each message's reports into the patients' states
(kept in the ledger), writes the Bundles and the OperationOutcome, and records the rows and
the new states in the same transaction.  A run killed and resumed therefore folds the same
messages in the same order from the same committed states, and writes the same bytes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from leukofhir.batch.fault import fault_issue
from leukofhir.batch.ledger import REASON_MAX, MessageRow
from leukofhir.batch.naming import output_base
from leukofhir.emit.bundle import Draft, finish_bytes
from leukofhir.emit.jsonio import dumps
from leukofhir.emit.outcome import build_operation_outcome
from leukofhir.errors import Issue
from leukofhir.lifecycle.settle import settle_drafts
from leukofhir.lifecycle.state import PatientState
from leukofhir.pipeline import Disposition, MessageOutcome, notes_only
from leukofhir.rules import RuleSet

__all__ = ["Settled", "Unsettled", "settle", "settle_fault", "unsettled"]


@dataclass(frozen=True, slots=True)
class Unsettled:
    """A processed message as a worker leaves it (small and cheap to pickle)."""

    key: str  # names its outputs (message_key)
    control_id: str
    drafts: tuple[Draft, ...]  # packed
    issues: tuple[Issue, ...]
    seed: str  # of its OperationOutcome
    label: str  # "message 3, MSH-10 …"


def unsettled(outcome: MessageOutcome, key: str) -> Unsettled:
    return Unsettled(
        key,
        outcome.control_id,
        tuple(report.draft.pack() for report in outcome.reports),
        outcome.issues,
        outcome.seed,
        outcome.label,
    )


@dataclass(frozen=True, slots=True)
class Settled:
    """A settled message: its files (name under OUT, bytes), its completed row, the
    patients' new states, and its Bundles as (file name, the lifecycle's patient or "")."""

    files: list[tuple[str, bytes]]
    row: MessageRow
    states: dict[str, PatientState]
    bundles: list[tuple[str, str]]


def settle(
    message: Unsettled,
    row: MessageRow,
    load: Callable[[str], PatientState],
    rule_set: RuleSet,
) -> Settled:
    """The message settled against the patients' states (``load``).  A message whose every
    report is superseded is skipped."""
    writes, notes, states = settle_drafts(message.drafts, load, rule_set)
    bundles = [finish_bytes(d, w, rule_set) for d, w in zip(message.drafts, writes, strict=True)]
    issues = (*message.issues, *notes)
    kind = Disposition.PROCESSED
    if all(bundle is None for bundle in bundles):
        kind = Disposition.SKIPPED
    base = output_base(kind.value, message.control_id, message.key)
    named = [
        (f"{base}.r{n}.bundle.json", bundle + b"\n", draft.facts.patient if draft.facts else "")
        for n, (bundle, draft) in enumerate(zip(bundles, message.drafts, strict=True), 1)
        if bundle is not None
    ]
    files = [(name, data) for name, data, _ in named]
    kept = tuple(i.text for i in issues) if notes_only(kind, issues) else ()
    if issues and not kept:  # notes only go to the ledger; anything else to a file
        outcome = build_operation_outcome(issues, seed=message.seed, context=message.label)
        files.append((f"{base}.outcome.json", dumps(outcome) + b"\n"))
    reason = notes[0].text[:REASON_MAX] if kind is Disposition.SKIPPED and notes else row.reason
    done = replace(
        row,
        outcome=kind.value,
        outputs=tuple(name for name, _ in files),
        notes=kept,
        reason=reason,
    )
    return Settled(files, done, states, [(name, patient) for name, _, patient in named])


def settle_fault(
    message: Unsettled, row: MessageRow, exc: Exception
) -> tuple[list[tuple[str, bytes]], MessageRow]:
    """A message the lifecycle failed on (a bug of ours): rejected with code 207, its
    OperationOutcome written (the message itself stays in its input file)."""
    issue = fault_issue(exc)
    base = output_base(Disposition.REJECTED.value, message.control_id, message.key)
    outcome = build_operation_outcome(
        (*message.issues, issue), seed=message.seed, context=message.label
    )
    files = [(f"{base}.outcome.json", dumps(outcome) + b"\n")]
    done = replace(
        row,
        outcome=Disposition.REJECTED.value,
        outputs=(files[0][0],),
        notes=(),
        reason=issue.text[:REASON_MAX],
    )
    return files, done

"""The worker's side: one input file in, its outputs written, one ledger row per message out.

A worker (a process of the pool, or the parent itself with ``--workers 1``) gets
:class:`FileTask` values (a path, and the messages of that file already done), reads the
file, splits it, runs :func:`leukofhir.pipeline.process_message` on every message not yet
done, writes the outputs atomically (:class:`~leukofhir.batch.store.Store`) and returns a
:class:`FileResult` with one :class:`~leukofhir.batch.ledger.MessageRow` per message.
Documents never travel back to the parent: only the small rows do, so the parent's cost
per message stays a few microseconds and the workers use the cores.

HL7 v2 messages are identified by (byte offset, SHA-256 of the message's bytes).  FHIR
input (detected by :func:`leukofhir.ingest.fhir.looks_like_fhir`) is processed as one
document; its units are identified by (offset, ``<SHA-256 of the file>#<unit index>``) and
a rejected unit keeps the whole input document beside its OperationOutcome.

Notes.  A processed message whose issues are all notes (severity ``information``, type
``informational``: "OBX[2] … are no CBC field leukofhir evaluates; not used", "also sent at
…; not used by the rules") gets no ``.outcome.json`` file: its notes go to the ledger
(``messages.notes``) and are counted in the summary.  Any other issue (a warning, an
incomplete report, an error) keeps the OperationOutcome file, with every issue in it,
notes included.  Skipped and rejected messages always keep theirs.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import signal
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path

from leukofhir.batch.ledger import MessageRow
from leukofhir.batch.naming import message_key, output_base
from leukofhir.batch.store import Store
from leukofhir.context import Context, Settings
from leukofhir.emit.jsonio import dumps
from leukofhir.errors import Severity
from leukofhir.ingest.fhir import looks_like_fhir
from leukofhir.ingest.framing import split_messages
from leukofhir.pipeline import Disposition, MessageOutcome, process, process_message

__all__ = ["FileResult", "FileTask", "Worker", "WorkerConfig", "init_worker", "run_tasks"]

_REASON_MAX = 300
OUT_ERROR = "out-error"  # a FileResult state: the outputs could not be written


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    """What every worker needs to build its :class:`Context` and :class:`Store`."""

    out: str
    fsync: bool = False
    settings: Settings = field(default_factory=Settings)


@dataclass(frozen=True, slots=True)
class FileTask:
    path: str
    source: str  # name in the ledger (relative to IN)
    recorded: str  # ISO 8601 processing time (Provenance.recorded) for this pass
    skip: frozenset[tuple[int, str]] = frozenset()  # (offset, sha256) already done


@dataclass(frozen=True, slots=True)
class FileResult:
    source: str
    size: int
    mtime_ns: int
    rows: tuple[MessageRow, ...]
    state: str = "done"  # done | unreadable | vanished | out-error
    error: str = ""
    present: tuple[tuple[int, str], ...] = ()  # (offset, sha256) still there, already done


class Worker:
    """Processes tasks with one context and one store; cheap to call many times."""

    def __init__(self, config: WorkerConfig) -> None:
        self.store = Store(Path(config.out), fsync=config.fsync)
        self._base = config.settings.context(datetime.fromtimestamp(0).astimezone())
        self._contexts: dict[str, Context] = {}

    def context(self, recorded: str) -> Context:
        context = self._contexts.get(recorded)
        if context is None:
            context = replace(self._base, now=datetime.fromisoformat(recorded))
            self._contexts = {recorded: context}
        return context

    def run(self, task: FileTask) -> FileResult:
        try:
            with open(task.path, "rb") as handle:
                info = os.fstat(handle.fileno())
                data = handle.read()
        except FileNotFoundError:
            return FileResult(task.source, 0, 0, (), "vanished", "the file disappeared")
        except OSError as exc:
            return FileResult(task.source, 0, 0, (), "unreadable", exc.strerror or str(exc))
        context = self.context(task.recorded)
        present: list[tuple[int, str]] = []
        try:
            rows = (
                self._fhir(task, data, context, present)
                if looks_like_fhir(data)
                else self._hl7v2(task, data, context, present)
            )
        except OSError as exc:  # writing to OUT failed (full, read-only ...): stops the batch
            return FileResult(task.source, 0, 0, (), OUT_ERROR, exc.strerror or str(exc))
        return FileResult(
            task.source, info.st_size, info.st_mtime_ns, tuple(rows), present=tuple(present)
        )

    def _hl7v2(
        self, task: FileTask, data: bytes, context: Context, present: list[tuple[int, str]]
    ) -> list[MessageRow]:
        rows: list[MessageRow] = []
        found = False
        for raw in split_messages(data):
            found = True
            sha = hashlib.sha256(raw.data).hexdigest()
            if (raw.offset, sha) not in task.skip:
                outcome = process_message(raw, context)
                rows.append(self._finish(task.source, outcome, raw.data, sha, ".hl7"))
            else:
                present.append((raw.offset, sha))
        if not found:  # nothing but blanks: the core's own "no message" rejection
            sha = hashlib.sha256(data).hexdigest()
            if (0, sha) not in task.skip:
                for outcome in process(data, context):
                    rows.append(self._finish(task.source, outcome, data, sha, ".hl7"))
            else:
                present.append((0, sha))
        return rows

    def _fhir(
        self, task: FileTask, data: bytes, context: Context, present: list[tuple[int, str]]
    ) -> list[MessageRow]:
        whole = hashlib.sha256(data).hexdigest()
        rows = []
        for outcome in process(data, context):
            sha = f"{whole}#{outcome.index}"
            if (outcome.offset, sha) not in task.skip:
                rows.append(self._finish(task.source, outcome, data, sha, ".json"))
            else:
                present.append((outcome.offset, sha))
        return rows

    def _finish(
        self, source: str, outcome: MessageOutcome, raw: bytes, sha: str, suffix: str
    ) -> MessageRow:
        kind = outcome.disposition.value
        base = output_base(kind, outcome.control_id, message_key(source, outcome.offset, sha))
        outputs: list[str] = []
        if outcome.disposition is Disposition.REJECTED:
            outputs.append(base + suffix)
            self.store.write(outputs[-1], raw)
        notes = _notes_only(outcome)
        for document_suffix, document in outcome.named_documents():
            if notes and document["resourceType"] == "OperationOutcome":
                continue  # in the ledger instead
            outputs.append(base + document_suffix)
            self.store.write(outputs[-1], dumps(document) + b"\n")
        return MessageRow(
            offset=outcome.offset,
            index=outcome.index,
            sha256=sha,
            control_id=outcome.control_id,
            outcome=kind,
            reports=len(outcome.reports),
            findings=tuple(
                f"{f.rule_id} G{f.grade}" if f.grade is not None else f.rule_id
                for report in outcome.reports
                for f in report.evaluation.findings
            ),
            reason=_reason(outcome),
            outputs=tuple(outputs),
            notes=notes,
        )


def _notes_only(outcome: MessageOutcome) -> tuple[str, ...]:
    """The texts of a processed message's issues when every one is a note; else ()."""
    return tuple(i.text for i in outcome.issues) if outcome.notes_only else ()  # never cut


def _reason(outcome: MessageOutcome) -> str:
    if outcome.disposition is Disposition.PROCESSED or not outcome.issues:
        return ""
    serious = [i for i in outcome.issues if i.severity in (Severity.ERROR, Severity.FATAL)]
    return (serious or list(outcome.issues))[0].text[:_REASON_MAX]


# -- pool side ---------------------------------------------------------------------------

_worker: Worker | None = None


def init_worker(config: WorkerConfig, parent: int) -> None:
    """Pool initializer: die with the parent, leave signals to it, build the worker."""
    global _worker
    try:  # Linux: SIGKILL this worker when the process that forked it dies
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        pass
    if os.getppid() != parent:  # the parent died before prctl
        os._exit(1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops the batch cleanly
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _worker = Worker(config)


def run_tasks(tasks: Sequence[FileTask]) -> list[FileResult]:
    if _worker is None:  # pragma: no cover - initializer always ran
        raise RuntimeError("worker not initialised")
    return [_worker.run(task) for task in tasks]

"""The worker's side: one input file in, its outputs written, one ledger row per message out.

A worker (a process of the pool, or the parent itself with ``--workers 1``) gets
:class:`FileTask` values (a path, and the messages of that file already done), reads the
file, splits it, runs :func:`leukofhir.pipeline.process_message` on every message not yet
done, writes the outputs atomically (:class:`~leukofhir.batch.store.Store`) and returns a
:class:`FileResult` with one :class:`~leukofhir.batch.ledger.MessageRow` per message.
Documents never travel back to the parent: only the small rows do, so the parent's cost
per message stays a few microseconds and the workers use the cores.

HL7 v2 messages are identified by (byte offset, SHA-256 of the message's bytes).  FHIR
input (detected by :func:`leukofhir.ingest.sniff.looks_like_fhir`) is processed as one
document; its units are identified by (offset, ``<SHA-256 of the file>#<unit index>``) and
a rejected unit keeps the whole input document beside its OperationOutcome.

Notes.  A processed message whose issues are all notes (severity ``information``, type
``informational``: "OBX[2] … are no CBC field leukofhir evaluates; not used", "also sent at
…; not used by the rules") gets no ``.outcome.json`` file: its notes go to the ledger
(``messages.notes``) and are counted in the summary.  Any other issue (a warning, an
incomplete report, an error) keeps the OperationOutcome file, with every issue in it,
notes included.  Skipped and rejected messages always keep theirs.

Faults.  Every message is processed and rendered under a guard, and the reader of the
file too (:mod:`leukofhir.batch.fault`): an exception escaping the core rejects that
message with code 207 (or, when the reader itself failed part-way, the rest of the file as
one unit), the other messages of the file go on and the worker lives.  Only an
``OSError`` of the writes to OUT leaves the worker, as an ``out-error`` result that stops
the batch.  Input is read through :func:`leukofhir.inputfile.read_input`: a FIFO or
device in a file's place is refused as unreadable, never waited on.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import signal
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import partial
from pathlib import Path

from leukofhir.batch.fault import Fault, faulted, guarded
from leukofhir.batch.ledger import REASON_MAX, MessageRow
from leukofhir.batch.naming import message_key, output_base
from leukofhir.batch.settle import Unsettled, unsettled
from leukofhir.batch.store import Store
from leukofhir.context import Context, Settings
from leukofhir.emit.jsonio import dumps
from leukofhir.errors import Severity
from leukofhir.ingest.framing import split_messages
from leukofhir.ingest.sniff import looks_like_fhir
from leukofhir.inputfile import read_input
from leukofhir.pipeline import Disposition, MessageOutcome, process, process_message

__all__ = [
    "FileResult",
    "FileTask",
    "Worker",
    "WorkerConfig",
    "init_worker",
    "run_chunk",
    "run_tasks",
]

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
    faults: tuple[tuple[int, str], ...] = ()  # (message from 1, exception type): rejected, 207
    # processed messages the parent settles and writes: (position in ``rows``, message)
    unsettled: tuple[tuple[int, Unsettled], ...] = ()


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
            data, info = read_input(task.path)
        except FileNotFoundError:
            return FileResult(task.source, 0, 0, (), "vanished", "the file disappeared")
        except OSError as exc:
            return FileResult(task.source, 0, 0, (), "unreadable", exc.strerror or str(exc))
        context = self.context(task.recorded)
        done = _Done()
        try:
            if looks_like_fhir(data):
                self._fhir(task, data, context, done)
            else:
                self._hl7v2(task, data, context, done)
        except OSError as exc:  # writing to OUT failed (full, read-only ...): stops the batch
            return FileResult(task.source, 0, 0, (), OUT_ERROR, exc.strerror or str(exc))
        return FileResult(
            task.source,
            info.st_size,
            info.st_mtime_ns,
            tuple(done.rows),
            present=tuple(done.present),
            faults=tuple(done.faults),
            unsettled=tuple(done.unsettled),
        )

    def _hl7v2(self, task: FileTask, data: bytes, context: Context, done: _Done) -> None:
        fault = Fault()
        count = end = 0  # messages read, and where the last one ended
        for raw in guarded(split_messages(data), fault):
            count, end = raw.index + 1, raw.offset + len(raw.data)
            sha = hashlib.sha256(raw.data).hexdigest()
            work = partial(process_message, raw, context)
            self._message(task, done, raw.index, raw.offset, sha, raw.data, ".hl7", work)
        if fault.error is not None:  # the splitter failed: the rest of the file is one unit
            rest = data[end:]
            sha = hashlib.sha256(rest).hexdigest()
            done.faults.append((count + 1, type(fault.error).__name__))
            work = partial(faulted, count, end, fault.error, rest=True)
            self._message(task, done, count, end, sha, rest, ".hl7", work)
        elif count == 0:  # nothing but blanks: the core's own "no message" rejection
            sha = hashlib.sha256(data).hexdigest()
            work = partial(_first, process(data, context))
            self._message(task, done, 0, 0, sha, data, ".hl7", work)

    def _fhir(self, task: FileTask, data: bytes, context: Context, done: _Done) -> None:
        whole = hashlib.sha256(data).hexdigest()
        fault = Fault()
        count = offset = 0  # reports read, and where the last one was
        for outcome in guarded(process(data, context), fault):
            count, offset = outcome.index + 1, outcome.offset
            sha = f"{whole}#{outcome.index}"
            work = partial(_given, outcome)
            self._message(task, done, outcome.index, outcome.offset, sha, data, ".json", work)
        if fault.error is not None:  # the reader failed: the reports it had not given
            done.faults.append((count + 1, type(fault.error).__name__))
            work = partial(faulted, count, offset, fault.error, rest=True)
            self._message(task, done, count, offset, f"{whole}#{count}", data, ".json", work)

    def _message(
        self,
        task: FileTask,
        done: _Done,
        index: int,
        offset: int,
        sha: str,
        raw: bytes,
        suffix: str,
        work: Callable[[], MessageOutcome],
    ) -> None:
        """One message (or report): skipped when done before; else processed and rendered
        under the guard (a fault rejects it with code 207), then written."""
        if (offset, sha) in task.skip:
            done.present.append((offset, sha))
            return
        try:
            files, row, later = self._render(task.source, work(), raw, sha, suffix)
        except Exception as exc:  # a bug in the core: this message only is rejected
            done.faults.append((index + 1, type(exc).__name__))
            outcome = faulted(index, offset, exc)
            files, row, later = self._render(task.source, outcome, raw, sha, suffix)
        for name, body in files:
            self.store.write(name, body)
        if later is not None:
            done.unsettled.append((len(done.rows), later))
        done.rows.append(row)

    def _render(
        self, source: str, outcome: MessageOutcome, raw: bytes, sha: str, suffix: str
    ) -> tuple[list[tuple[str, bytes]], MessageRow, Unsettled | None]:
        """The files of one outcome (name under OUT, bytes) and its ledger row; a message
        with reports is left to the parent to settle (:mod:`leukofhir.batch.settle`)."""
        kind = outcome.disposition.value
        key = message_key(source, outcome.offset, sha)
        later = unsettled(outcome, key) if outcome.reports else None
        base = output_base(kind, outcome.control_id, key)
        files: list[tuple[str, bytes]] = []
        if outcome.disposition is Disposition.REJECTED:
            files.append((base + suffix, raw))
        notes = _notes_only(outcome)
        for document_suffix, document in () if later else outcome.named_documents():
            if notes and document["resourceType"] == "OperationOutcome":
                continue  # in the ledger instead
            files.append((base + document_suffix, dumps(document) + b"\n"))
        row = MessageRow(
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
            outputs=tuple(name for name, _ in files),
            notes=notes,
        )
        return files, row, later


@dataclass(slots=True)
class _Done:
    """What a worker gathers over one file."""

    rows: list[MessageRow] = field(default_factory=list)
    present: list[tuple[int, str]] = field(default_factory=list)
    faults: list[tuple[int, str]] = field(default_factory=list)
    unsettled: list[tuple[int, Unsettled]] = field(default_factory=list)


def _given(outcome: MessageOutcome) -> MessageOutcome:
    return outcome


def _first(outcomes: Iterator[MessageOutcome]) -> MessageOutcome:
    return next(outcomes)


def _notes_only(outcome: MessageOutcome) -> tuple[str, ...]:
    """The texts of a processed message's issues when every one is a note; else ()."""
    return tuple(i.text for i in outcome.issues) if outcome.notes_only else ()  # never cut


def _reason(outcome: MessageOutcome) -> str:
    if outcome.disposition is Disposition.PROCESSED or not outcome.issues:
        return ""
    serious = [i for i in outcome.issues if i.severity in (Severity.ERROR, Severity.FATAL)]
    return (serious or list(outcome.issues))[0].text[:REASON_MAX]


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


# -- Dask side (leukofhir.batch.dask_executor) ---------------------------------------------

_workers: dict[WorkerConfig, Worker] = {}


def run_chunk(config: WorkerConfig, tasks: Sequence[FileTask]) -> list[FileResult]:
    """A Dask task: the worker process builds its :class:`Worker` once per configuration."""
    worker = _workers.get(config)
    if worker is None:
        _workers.clear()
        worker = _workers[config] = Worker(config)
    return [worker.run(task) for task in tasks]

"""``leukofhir batch``: every message under IN processed exactly once into OUT.

One process owns OUT: it holds ``OUT/.batch.lock``, scans IN, asks the ledger what is left,
hands files to the workers, records their rows and commits.  Workers (``--workers N``
processes, forked; with ``--workers 1`` the parent does the work itself; with ``--dask``
the workers of a Dask cluster: :mod:`leukofhir.batch.executor`) read, process and write
outputs; they return rows only.  At most ``2 × workers`` tasks are in flight, each
of at most ``files_per_task`` files or ``task_bytes`` bytes, so memory does not grow with
the number of files.

Exactly once, and crash safety.  Outputs are written atomically before their rows are
committed (:mod:`leukofhir.batch.ledger`), a file's rows in one transaction.  Killed at
any point, a re-run: waits for the lock (workers die with their parent: PR_SET_PDEATHSIG,
and hold the parent's lock until they are gone), removes the temporary files, skips the
files whose ``done`` row matches their size and mtime, and processes the rest again,
skipping messages already recorded.  A message processed but not yet recorded is
processed again and its outputs are replaced by the same bytes, because:

Determinism.  Provenance.recorded is ``--now`` when given; otherwise the clock at the
start of a pass, stored in the ledger (``meta.session_now``) and reused by every re-run
until a pass completes.  A killed and resumed pass therefore writes exactly what the
uninterrupted pass would have; the next pass (new files, later) gets a new time.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from leukofhir.batch.executor import Executor, ExecutorError, Inline, Pending, Pool
from leukofhir.batch.gone import Seen
from leukofhir.batch.ledger import Ledger, MessageRow
from leukofhir.batch.scan import SORT_LIMIT, Found, ScanStats, scan
from leukofhir.batch.settle import settle, settle_fault
from leukofhir.batch.store import Store, move_no_overwrite, sweep_temporaries
from leukofhir.batch.summary import (
    Progress,
    RunCounts,
    build_summary,
    write_listings,
)
from leukofhir.batch.work import OUT_ERROR, FileResult, FileTask, WorkerConfig
from leukofhir.context import Settings
from leukofhir.logs import Logger
from leukofhir.rules import load_rule_set
from leukofhir.stopping import StopFlag, stop_on_signals

if TYPE_CHECKING:
    from leukofhir.batch.outbound import BatchDelivery
    from leukofhir.delivery.options import DeliveryOptions

__all__ = ["BatchError", "BatchOptions", "BatchResult", "run_batch"]

LOCK_NAME = ".batch.lock"


class BatchError(Exception):
    """The batch cannot go on (OUT unwritable or full, OUT in use, no Dask scheduler):
    exit code 3."""


@dataclass(frozen=True, slots=True)
class BatchOptions:
    source: Path
    out: Path
    workers: int = field(default_factory=lambda: os.cpu_count() or 1)
    min_age: float = 1.0
    fsync: bool = False
    retry_rejected: bool = False
    move_processed: Path | None = None
    move_rejected: Path | None = None
    now: datetime | None = None
    mappings: tuple[Path, ...] = ()
    timezone: str = "UTC"
    fhir_target: str = "other"
    profile: str = ""  # the deployment profile file (--profile)
    notify_critical: bool = False
    validate_output: bool = False
    validate_structure: bool = False
    watch: bool = False
    interval: float = 2.0
    progress: bool | None = None  # None: a bar when stderr is a terminal
    progress_every: float = 10.0  # seconds between progress log lines (without a bar)
    files_per_task: int = 32
    task_bytes: int = 1 << 20
    sort_limit: int = SORT_LIMIT  # entries of one folder sorted in memory; more spill to OUT
    delivery: DeliveryOptions | None = None  # --fhir-base: deliver every Bundle
    queue_only: bool = False  # --fhir-queue-only: queue them; leukofhir deliver sends them
    dask: str | None = None  # --dask: a scheduler's address, or "local" (a LocalCluster)
    dask_files_per_task: int = 128  # Dask: bigger tasks (a hundred messages or more) than
    dask_task_bytes: int = 512 << 10  # the pool's, as a task costs a scheduler round trip


@dataclass(frozen=True, slots=True)
class BatchResult:
    summary: dict[str, Any]
    error: str = ""  # why the batch stopped early ("" when it did not)

    @property
    def exit_code(self) -> int:
        if self.error:
            return 3
        messages = self.summary["messages"]
        files = self.summary["files"]
        dead = self.summary.get("delivery", {}).get("documents", {}).get("dead", 0)
        return 1 if messages["rejected"] or files.get("unreadable") or dead else 0


def run_batch(options: BatchOptions, log: Logger) -> BatchResult:
    options.out.mkdir(parents=True, exist_ok=True)
    with _locked(options.out), stop_on_signals() as stop:
        removed = sweep_temporaries(options.out)
        if removed:
            log.info("removed temporary files of an interrupted run", count=removed)
        runner = _Runner(options, log, stop)
        try:
            return runner.run()
        finally:
            runner.close()


class _Runner:
    def __init__(self, options: BatchOptions, log: Logger, stop: StopFlag):
        self.options = options
        self.log = log
        self.stop = stop
        self.store = Store(options.out, fsync=options.fsync)
        self.run_counts = RunCounts()
        self.stats = ScanStats()  # the last pass's
        self.error = ""
        self._told: set[tuple[str, str]] = set()  # passed-over entries logged (once a run)
        self._told_empty = False
        self._moves: list[tuple[Path, str, bool]] = []  # (path, source, rejected)
        self._inflight: deque[tuple[Pending, list[FileTask]]] = deque()
        config = WorkerConfig(
            out=str(options.out),
            fsync=options.fsync,
            settings=Settings(
                mappings=tuple(str(m) for m in options.mappings),
                timezone=options.timezone,
                validate_output=options.validate_output,
                validate_structure=options.validate_structure,
                fhir_target=options.fhir_target,
                profile=options.profile,
                notify_critical=options.notify_critical,
            ),
        )
        self.rule_set = load_rule_set()
        self.executor = _executor(options, config)
        # opened after the fork: the workers never hold the database
        self.ledger = Ledger(options.out, durable=options.fsync, on_commit=self._committed)
        self.delivery: BatchDelivery | None = None
        if options.delivery is not None:  # a thread: started after the fork, too
            from leukofhir.batch.outbound import BatchDelivery
            from leukofhir.delivery.lock import DeliveryBusyError

            try:
                self.delivery = BatchDelivery(
                    self.ledger.connection,
                    self.ledger.path,
                    options.out,
                    options.delivery,
                    durable=options.fsync,
                    send=not options.queue_only,
                )
            except DeliveryBusyError as exc:
                self.close()
                raise BatchError(str(exc)) from None
            self.delivery.start()

    def close(self) -> None:
        if self.delivery is not None:
            self.delivery.finish(self.stop, wait=False)
        self.executor.close()
        self.ledger.close()

    # -- the run ------------------------------------------------------------------------
    def run(self) -> BatchResult:
        self._flush()  # finishes the stale outputs a killed run left listed
        with Progress(
            self.log, bar=self.options.progress, every=self.options.progress_every
        ) as progress:
            if progress.has_bar:
                self._count_in_background(progress)
            while True:
                completed = self._pass(progress)
                self._write_summary()
                if not self.options.watch or self.stop.is_set() or self.error or not completed:
                    break
                self.stop.wait(self.options.interval)
                self._check_delivery()
                if self.stop.is_set() or self.error:
                    break
            self._flush()  # what the last commit's moves left pending
            self._finish_delivery(progress)
        summary = self._write_summary()
        self.log.info(
            "batch finished",
            stopped=summary["this_run"]["stopped"],
            **{f"messages_{k}": v for k, v in summary["messages"].items()},
        )
        return BatchResult(summary, self.error)

    def _pass(self, progress: Progress) -> bool:
        """One scan of IN; True when it went to the end.  After a complete pass, the files
        that left IN leave the ledger and OUT."""
        seen = Seen(limit=self.options.sort_limit, directory=self.options.out)
        try:
            completed = self._scan_and_process(progress, seen)
            self._tell_passed_over()
            if completed:
                self._remove_gone(seen)
        finally:
            seen.close()
        completed = completed and not (self.stop.is_set() or self.error)
        if completed and self.options.now is None:
            self.ledger.set_meta("session_now", None)  # the next pass gets a new time
        return completed

    def _scan_and_process(self, progress: Progress, seen: Seen) -> bool:
        recorded = self._recorded()
        self.stats = ScanStats()
        batch: list[FileTask] = []
        size = 0
        per_task, per_bytes = self.executor.files_per_task, self.executor.task_bytes
        for found in self._scan_or_fail(seen):
            if self.stop.is_set() or self.error:
                break
            task = self._task(found, recorded)
            if task is not None:
                batch.append(task)
                size += found.size
                if len(batch) >= per_task or size >= per_bytes:
                    self._submit(batch)
                    batch, size = [], 0
                    self._drain(2 * self.executor.slots - 1)
            self._check_delivery()
            progress.update(self.run_counts, self._delivered())
        if batch and not (self.stop.is_set() or self.error):
            self._submit(batch)
        self._drain(0)
        progress.update(self.run_counts, self._delivered())
        self._flush()
        return not (self.stop.is_set() or self.error)

    def _remove_gone(self, seen: Seen) -> None:
        """The files of the ledger that the complete scan did not find: their rows and
        outputs go (:mod:`leukofhir.batch.gone`).  Not the ones the batch moved out of IN;
        the version 2 rows, whose moves are unknown, only when this run moves nothing."""
        recorded = self.ledger.sources(unknown_moved=not self._moving())
        gone = seen.gone(recorded, unlisted=[prefix for prefix, _ in self.stats.unlisted])
        try:
            if seen.count == 0:  # an unmounted share looks like this: never empty OUT for it
                if next(gone, None) is not None and not self._told_empty:
                    self._told_empty = True
                    self.log.warning(
                        "IN holds no file: the files in the ledger are kept (remove OUT to"
                        " start afresh)",
                        folder=str(self.options.source),
                    )
                return
            for source in gone:
                messages = self.ledger.remove_file(source)
                self.run_counts.files["removed"] += 1
                self.log.info(
                    "file left IN: its messages and outputs removed",
                    file=source,
                    messages=messages,
                )
        except sqlite3.Error as exc:
            self.ledger.rollback()
            self._fail(exc, [])
            return
        except OSError as exc:  # reading the spilled names back
            self._fail(exc, [])
            return
        self._flush()

    def _tell_passed_over(self) -> None:
        """Log what the scan could not take (each once a run): special files, broken
        links, folders it could not list."""
        unlisted = [
            (prefix or ".", f"folder not readable: {why}") for prefix, why in self.stats.unlisted
        ]
        for source, reason in [*self.stats.passed_over, *unlisted]:
            if (source, reason) in self._told or len(self._told) >= 10_000:
                continue
            self._told.add((source, reason))
            self.log.warning("path passed over", file=source, reason=reason)

    def _recorded(self) -> str:
        if self.options.now is not None:
            return self.options.now.isoformat()
        recorded = self.ledger.get_meta("session_now")
        if recorded is None:
            recorded = datetime.now(UTC).replace(microsecond=0).isoformat()
            self.ledger.set_meta("session_now", recorded)
        return recorded

    def _scan_or_fail(self, seen: Seen) -> Iterator[Found]:
        """The scan; a failure to spill its sort to OUT (a full disk) stops the batch."""
        try:
            yield from self._scan(seen)
        except OSError as exc:
            self._fail(exc, [])

    def _scan(self, seen: Seen) -> Iterator[Found]:
        exclude = tuple(
            p
            for p in (self.options.out, self.options.move_processed, self.options.move_rejected)
            if p is not None
        )
        return scan(
            self.options.source,
            now_ns=time.time_ns(),
            min_age=self.options.min_age,
            exclude=exclude,
            stats=self.stats,
            sort_limit=self.options.sort_limit,
            spill_dir=self.options.out,
            present=seen.add,
        )

    def _task(self, found: Found, recorded: str) -> FileTask | None:
        state = self.ledger.file_state(found.source)
        retry = self.options.retry_rejected
        if state is not None and state.state == "done":
            unchanged = state.size == found.size and state.mtime_ns == found.mtime_ns
            if unchanged and not (retry and self.ledger.has_rejected(found.source)):
                self.run_counts.files["unchanged"] += 1
                if self._moving():
                    rejected = self.ledger.has_rejected(found.source)
                    self._will_move(found.path, found.source, rejected)
                return None
        skip = (
            self.ledger.done_keys(found.source, retry_rejected=retry)
            if state is not None
            else frozenset()
        )
        return FileTask(str(found.path), found.source, recorded, skip)

    # -- workers --------------------------------------------------------------------------
    def _submit(self, tasks: list[FileTask]) -> None:
        self._inflight.append((self.executor.submit(tasks), tasks))

    def _drain(self, keep: int) -> None:
        """Record finished tasks in the order they were handed out (the lifecycle folds
        messages in input order), until at most ``keep`` are in flight."""
        while len(self._inflight) > keep:
            pending, tasks = self._inflight.popleft()  # the oldest
            try:
                results = pending.result()  # waits for it
            except Exception as exc:
                self._fail(exc, tasks)
                continue
            for task, result in zip(tasks, results, strict=True):
                self._record(task, result)
            if self.delivery is not None and self.delivery.sending:  # go now, not after 2,000
                self._flush()

    def _record(self, task: FileTask, result: FileResult) -> None:
        if result.state == OUT_ERROR:
            self._fail(OSError(0, result.error), [task])
        if self.error:
            return
        try:
            rows = self._settle(result)
        except OSError as exc:  # writing to OUT failed: stops the batch
            self._fail(exc, [task])
            return
        try:
            self.ledger.record_file(
                result.source,
                result.size,
                result.mtime_ns,
                rows,
                recorded=task.recorded,
                state=result.state,
                error=result.error,
                replacing=bool(task.skip) or self.options.retry_rejected,
                present=frozenset(result.present) if result.state == "done" else None,
            )
        except sqlite3.Error as exc:
            self.ledger.rollback()
            self._fail(exc, [task])
            return
        if result.state != "done":
            self.run_counts.files[result.state] += 1
            self.log.warning("file not processed", file=result.source, reason=result.error)
            return
        self.run_counts.files["changed" if task.skip else "new"] += 1
        for row in rows:
            self.run_counts.messages[row.outcome] += 1
        for number, kind in result.faults:  # the type only: an exception's text may quote input
            self.log.warning(
                "message rejected: processing failed (code 207)",
                file=result.source,
                message=number,
                error=kind,
            )
        if self._moving():
            rejected = any(row.outcome == "rejected" for row in rows) or (
                bool(task.skip) and self.ledger.has_rejected(result.source)
            )
            self._will_move(Path(task.path), result.source, rejected)

    def _settle(self, result: FileResult) -> list[MessageRow]:
        """The file's processed messages settled against the patients' states, in order:
        their outputs written, their rows completed, the new states saved in the same
        transaction as the rows (:mod:`leukofhir.batch.settle`)."""
        rows = list(result.rows)
        for position, message in result.unsettled:
            bundles: list[tuple[str, str]] = []
            try:
                settled = settle(message, rows[position], self.ledger.load_state, self.rule_set)
                files, rows[position], states = settled.files, settled.row, settled.states
                bundles = settled.bundles
            except Exception as exc:  # a bug in the lifecycle: this message only is rejected
                self.log.warning(
                    "message rejected: settling failed (code 207)",
                    file=result.source,
                    message=rows[position].index + 1,
                    error=type(exc).__name__,
                )
                files, rows[position] = settle_fault(message, rows[position], exc)
                states = {}
            for name, body in files:
                self.store.write(name, body)
            self.ledger.save_states(states)
            if self.delivery is not None and bundles:  # queued with the row and the states
                data = dict(files)
                self.ledger.begin()
                self.delivery.stage([(name, patient, data[name]) for name, patient in bundles])
        return rows

    def _fail(self, exc: BaseException, tasks: list[FileTask]) -> None:
        if not self.error:
            if isinstance(exc, OSError | sqlite3.Error):
                reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
                self.error = f"cannot write to {self.options.out}: {reason}"
            else:  # a worker died (killed, out of memory): nothing is lost, re-run
                reason = f"{type(exc).__name__}: {exc}"
                self.error = f"a worker failed: {reason}"
            self.log.error(
                "batch stopped; fix the cause and run the same command again",
                error=reason,
                file=tasks[0].source if tasks else "",
            )
            self._moves.clear()
            try:  # the rows recorded so far have their outputs: keep them
                self.ledger.flush()
            except sqlite3.Error:  # the ledger's own disk is full too: SQLite rolls back
                self.ledger.rollback()

    def _flush(self) -> None:
        if self.error:
            return
        try:
            self.ledger.flush()
        except sqlite3.Error as exc:
            self.ledger.rollback()
            self._fail(exc, [])

    # -- after commits ----------------------------------------------------------------------
    def _committed(self, stale: list[str]) -> None:
        if self.delivery is not None:
            self.delivery.committed()
        for relative in stale:  # outputs of a retried message that it no longer has
            with suppress(OSError):
                (self.options.out / relative).unlink()
        moves, self._moves = self._moves, []
        for path, source, rejected in moves:
            self._move(path, source, rejected)

    def _moving(self) -> bool:
        return self.options.move_processed is not None or self.options.move_rejected is not None

    def _will_move(self, path: Path, source: str, rejected: bool) -> None:
        """Move the file after the next commit, which records that it was moved out of IN
        (so that it is not taken for a file gone from IN: see :meth:`_remove_gone`)."""
        if self._move_folder(rejected) is None:
            return
        self.ledger.mark_moved(source)
        self._moves.append((path, source, rejected))

    def _move_folder(self, rejected: bool) -> Path | None:
        return self.options.move_rejected if rejected else self.options.move_processed

    def _move(self, path: Path, source: str, rejected: bool) -> None:
        folder = self._move_folder(rejected)
        if folder is None:
            return
        try:
            where = move_no_overwrite(path, folder, source, fsync=self.options.fsync)
        except OSError as exc:
            self.log.warning("file not moved", file=source, reason=exc.strerror or str(exc))
            self.ledger.mark_moved(source, moved=False)  # it stays in IN, mirrored
            return
        self.run_counts.files["moved"] += 1
        self.log.info("file moved", file=source, to=str(where))

    # -- delivery -------------------------------------------------------------------------
    def _check_delivery(self) -> None:
        """Delivery stopped (401/403) or failed: the batch stops too (exit 3)."""
        problem = self.delivery.problem() if self.delivery is not None else ""
        if problem and not self.error:
            self.error = problem
            self.log.error("batch stopped: delivery cannot go on", error=problem)

    def _delivered(self) -> tuple[int, int] | None:
        return self.delivery.progress() if self.delivery is not None else None

    def _finish_delivery(self, progress: Progress) -> None:
        """Wait until nothing is left to try (unless stopped, by a signal or an error: then
        what is pending stays so), showing progress meanwhile."""
        if self.delivery is None or not self.delivery.sending:
            return
        wait = not (self.error or self.stop.is_set())
        if wait:
            self.log.info("delivering what is left", **self._outbox_counts())
        done = threading.Event()

        def show() -> None:
            while not done.wait(0.5):
                progress.update(self.run_counts, self._delivered())

        shower = threading.Thread(target=show, daemon=True)
        shower.start()
        try:
            self.delivery.finish(self.stop, wait=wait)
        finally:
            done.set()
            shower.join()
        progress.update(self.run_counts, self._delivered())
        self._check_delivery()
        self.log.info("delivery finished", **self._outbox_counts())

    def _outbox_counts(self) -> dict[str, int]:
        assert self.delivery is not None
        counts = self.delivery.outbox.counts(time.time())
        return {
            "delivered": counts.delivered,
            "pending": counts.pending,
            "held": counts.held,
            "dead": counts.dead,
        }

    # -- the end --------------------------------------------------------------------------
    def _write_summary(self) -> dict[str, Any]:
        stopped = self.error or ("stopped by a signal" if self.stop.is_set() else "")
        summary = build_summary(
            self.ledger,
            self.run_counts,
            left=self.stats.left,
            scan_errors=self.stats.errors,
            passed_over=self.stats.passed_over,
            stopped=stopped,
        )
        if self.delivery is not None:
            summary["delivery"] = self.delivery.section()
        try:
            write_listings(self.ledger, self.store, summary)
        except OSError as exc:
            self.log.error("summary not written", error=exc.strerror or str(exc))
        return summary

    def _count_in_background(self, progress: Progress) -> None:
        def count() -> None:
            with suppress(OSError):  # no total (no ETA) if the count cannot spill
                progress.set_total(sum(1 for _ in self._scan_quiet()))

        threading.Thread(target=count, daemon=True).start()

    def _scan_quiet(self) -> Iterator[Found]:
        return scan(
            self.options.source,
            now_ns=time.time_ns(),
            min_age=self.options.min_age,
            sort_limit=self.options.sort_limit,
            spill_dir=self.options.out,
        )


def _executor(options: BatchOptions, config: WorkerConfig) -> Executor:
    """The parent itself (``--workers 1``), a forked pool, or Dask (imported only then)."""
    if options.dask is not None:
        from leukofhir.batch.dask_executor import DaskExecutor  # the dask extra

        try:
            return DaskExecutor(
                options.dask,
                config,
                workers=options.workers,
                files_per_task=options.dask_files_per_task,
                task_bytes=options.dask_task_bytes,
            )
        except ExecutorError as exc:
            raise BatchError(str(exc)) from None
    if options.workers > 1:
        return Pool(config, options.workers, options.files_per_task, options.task_bytes)
    return Inline(config, options.task_bytes)


@contextmanager
def _locked(out: Path, timeout: float = 30.0) -> Iterator[None]:
    """One batch per OUT.  Workers of a killed run inherit its lock until they are gone."""
    fd = os.open(out / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise BatchError(f"another batch is running on {out}") from None
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)

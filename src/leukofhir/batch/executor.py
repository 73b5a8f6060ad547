"""Where the batch's tasks run: the parent itself, a process pool, or a Dask cluster.

The runner hands an :class:`Executor` lists of :class:`~leukofhir.batch.work.FileTask`
and gets back, per list, a :class:`Pending` whose ``result()`` is the list of
:class:`~leukofhir.batch.work.FileResult` (or raises what went wrong).  It takes the
results in the order it handed the tasks out, whatever the executor: the ledger and the
lifecycle stay the parent's (:mod:`leukofhir.batch.runner`).  ``slots`` is how many tasks
run at once (the runner keeps twice that many in flight), ``files_per_task`` and
``task_bytes`` the size of one task.

Dask (:mod:`leukofhir.batch.dask_executor`) is imported only when asked for.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from multiprocessing import get_context
from typing import Protocol

from leukofhir.batch.work import FileResult, FileTask, Worker, WorkerConfig, init_worker, run_tasks
from leukofhir.errors import UsageError

__all__ = ["Executor", "ExecutorError", "Inline", "Pending", "Pool", "check_dask"]


class ExecutorError(Exception):
    """The executor cannot start (a Dask scheduler that does not answer)."""


class Pending(Protocol):
    def result(self) -> list[FileResult]: ...


class Executor(Protocol):
    slots: int
    files_per_task: int
    task_bytes: int

    def submit(self, tasks: Sequence[FileTask]) -> Pending: ...

    def close(self) -> None: ...


class Inline:
    """``--workers 1``: the parent does the work, one file a task, when it is handed out."""

    slots = 1
    files_per_task = 1

    def __init__(self, config: WorkerConfig, task_bytes: int) -> None:
        self.worker = Worker(config)
        self.task_bytes = task_bytes

    def submit(self, tasks: Sequence[FileTask]) -> Pending:
        future: Future[list[FileResult]] = Future()
        try:
            future.set_result([self.worker.run(task) for task in tasks])
        except Exception as exc:
            future.set_exception(exc)
        return future

    def close(self) -> None:
        pass


class Pool:
    """``--workers N``: N forked processes (they die with the parent: see ``init_worker``)."""

    def __init__(
        self, config: WorkerConfig, workers: int, files_per_task: int, task_bytes: int
    ) -> None:
        self.slots = workers
        self.files_per_task = files_per_task
        self.task_bytes = task_bytes
        self.pool = ProcessPoolExecutor(
            workers,
            mp_context=get_context("fork"),
            initializer=init_worker,
            initargs=(config, os.getpid()),
        )
        self.pool.submit(run_tasks, []).result()  # fork now, before any thread starts

    def submit(self, tasks: Sequence[FileTask]) -> Pending:
        return self.pool.submit(run_tasks, tasks)

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


def check_dask(address: str) -> None:
    """``--dask ADDRESS`` usable here (Dask installed, an address that looks like one),
    without importing Dask; else a usage error (exit 2)."""
    if address != "local" and "://" not in address:
        raise UsageError(
            f"--dask takes 'local' or a scheduler's address (tcp://HOST:8786): {address}"
        )
    if importlib.util.find_spec("distributed") is None:
        raise UsageError(
            "--dask needs Dask distributed, which is not installed: pip install 'leukofhir[dask]'"
        )

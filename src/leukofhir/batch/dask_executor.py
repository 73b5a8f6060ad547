"""The batch's tasks on a Dask distributed cluster (``--dask tcp://HOST:8786`` or ``local``).

Dask schedules; leukofhir does not.  Each task is a list of files (a hundred messages or
more: up to ``files_per_task`` files or ``task_bytes`` bytes) submitted with
:meth:`distributed.Client.submit`; a Dask worker runs
:func:`leukofhir.batch.work.run_chunk` on it, which reads the files, processes them, writes
the outputs that need no lifecycle state to OUT and returns the same
:class:`~leukofhir.batch.work.FileResult` values a pool worker returns.  The parent takes
them in the order it handed them out and does everything else (ledger, lifecycle, Bundles),
so OUT is the process pool's, byte for byte.

A worker that dies: Dask gives its tasks to another worker (``distributed.scheduler.
allowed-failures`` times, then the task fails with ``KilledWorker`` and the batch stops with
exit 3); the task rewrites the outputs its first try may have written, with the same bytes,
and nothing is recorded twice because only the parent records.  What a killed worker was
writing stays as a temporary file: :meth:`DaskExecutor.close` removes them.

With a remote scheduler the workers must see IN and OUT under the same absolute paths as
the parent (a shared file system), and have leukofhir installed.  ``local`` starts a
``LocalCluster`` on 127.0.0.1: ``--workers`` processes of one thread each, no dashboard;
they ignore SIGINT (:func:`dask_setup`), as the pool's workers do, so that Ctrl-C in a
terminal, which reaches the whole process group, stops the batch cleanly: the parent
finishes the tasks in hand, records them and ends.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Sequence
from concurrent.futures import CancelledError
from dataclasses import replace
from pathlib import Path
from typing import Any

from distributed import Client, Future, LocalCluster

from leukofhir.batch.executor import ExecutorError, Pending
from leukofhir.batch.store import sweep_temporaries
from leukofhir.batch.work import FileResult, FileTask, WorkerConfig, run_chunk

__all__ = ["DaskExecutor", "dask_setup"]

LOCAL = "local"


class DaskExecutor:
    def __init__(
        self,
        address: str,
        config: WorkerConfig,
        *,
        workers: int,
        files_per_task: int,
        task_bytes: int,
    ) -> None:
        self.config = replace(config, out=os.path.abspath(config.out))
        self.files_per_task = files_per_task
        self.task_bytes = task_bytes
        self.cluster: LocalCluster | None = None
        try:
            if address == LOCAL:
                self.cluster = LocalCluster(
                    n_workers=workers,
                    threads_per_worker=1,
                    processes=True,
                    host="127.0.0.1",
                    dashboard_address=None,
                    silence_logs=logging.ERROR,
                    preload=[__name__],  # dask_setup below, in every worker
                )
                self.client = Client(self.cluster)
            else:  # waits up to distributed.comm.timeouts.connect (DASK_ environment)
                self.client = Client(address)
        except (OSError, ValueError) as exc:  # TimeoutError is an OSError
            if self.cluster is not None:
                self.cluster.close()
            where = "start a local Dask cluster" if address == LOCAL else f"reach {address}"
            raise ExecutorError(f"cannot {where}: {exc}") from None
        threads: dict[str, int] = self.client.nthreads()
        self.slots = max(sum(threads.values()), 1) if address != LOCAL else workers

    def submit(self, tasks: Sequence[FileTask]) -> Pending:
        chunk = [replace(task, path=os.path.abspath(task.path)) for task in tasks]
        return _Pending(self.client.submit(run_chunk, self.config, chunk, pure=False))

    def close(self) -> None:
        try:
            self.client.close()
        finally:
            if self.cluster is not None:
                self.cluster.close()
        sweep_temporaries(Path(self.config.out))  # what killed workers were writing


class _Pending:
    def __init__(self, future: Future[Any]) -> None:
        self.future = future

    def result(self) -> list[FileResult]:
        try:
            results: list[FileResult] = self.future.result()
        except CancelledError:  # the scheduler, or the connection to it, was lost
            raise RuntimeError("the Dask task was cancelled (scheduler lost?)") from None
        return results


def dask_setup(worker: object) -> None:
    """Dask's preload hook, run as each worker of the local cluster starts (a restarted one
    too): Ctrl-C is the parent's to handle."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)

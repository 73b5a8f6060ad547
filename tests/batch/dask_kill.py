"""A Dask worker plugin for tests/batch/test_dask.py: the first worker to start its second
task is SIGKILLed a moment later, mid-task, once per marker file (the worker the nanny
starts in its place gets the plugin too, and lives).  Kept free of pytest: the workers
import it."""

from __future__ import annotations

import os
import signal
import threading
from typing import Any

from distributed.diagnostics.plugin import WorkerPlugin


class KillOnce(WorkerPlugin):
    name = "leukofhir-kill-once"

    def __init__(self, marker: str, delay: float = 0.05) -> None:
        self.marker = marker
        self.delay = delay
        self.started = 0

    def setup(self, worker: Any) -> None:
        self.started = 0

    def transition(self, key: Any, start: str, finish: str, **kwargs: Any) -> None:
        if finish != "executing":
            return
        self.started += 1
        if self.started < 2:
            return
        try:
            fd = os.open(self.marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        threading.Timer(self.delay, os.kill, (os.getpid(), signal.SIGKILL)).start()

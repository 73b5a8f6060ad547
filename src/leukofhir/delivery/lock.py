"""One deliverer per outbox: per-patient order holds only when one loop hands out the
documents.  Whoever delivers from OUT (a batch, the service's deliverer, the ``deliver``
command) holds ``OUT/.delivery.lock`` (flock; released when the process ends, however)."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

__all__ = ["LOCK_NAME", "DeliveryBusyError", "DeliveryLock"]

LOCK_NAME = ".delivery.lock"


class DeliveryBusyError(Exception):
    """Another process delivers from this OUT."""


class DeliveryLock:
    def __init__(self, out: Path) -> None:
        self.path = out / LOCK_NAME
        self._fd: int | None = None

    def acquire(self, *, wait: bool = False) -> None:
        """Take it, or raise :class:`DeliveryBusyError` (``wait``: block until it is free)."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(fd)
            raise DeliveryBusyError(f"another process delivers from {self.path.parent}") from None
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

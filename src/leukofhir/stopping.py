"""SIGINT/SIGTERM stop ``batch`` and ``worker``: the flag the signal handler sets and the
run watches.

Not a :class:`threading.Event`: its ``set()`` takes the lock that a ``wait()`` holds for a
few instructions, and a handler runs *in* the main thread, between any two of them.  A
signal arriving while the main thread was inside ``wait()`` (as ``batch --watch`` is
between passes) made the handler wait for a lock its own thread held: the batch hung.
:class:`StopFlag` takes no lock: ``set()`` stores a bool and writes one byte to a pipe
(both safe in a handler); ``wait()`` selects on the pipe.
"""

from __future__ import annotations

import os
import select
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress

__all__ = ["StopFlag", "stop_on_signals"]


class StopFlag:
    """Set once, from a signal handler or any thread; watched by any thread."""

    def __init__(self) -> None:
        self._set = False
        self._read, self._write = os.pipe()
        os.set_blocking(self._write, False)

    def set(self) -> None:
        if not self._set:
            self._set = True
            with suppress(BlockingIOError):  # the pipe holds a byte already
                os.write(self._write, b"\0")

    def is_set(self) -> bool:
        return self._set

    def wait(self, timeout: float) -> bool:
        """Until set or ``timeout`` seconds; whether it is set."""
        if not self._set:
            select.select([self._read], [], [], timeout)
        return self._set

    def close(self) -> None:
        os.close(self._read)
        os.close(self._write)


@contextmanager
def stop_on_signals() -> Iterator[StopFlag]:
    """SIGINT/SIGTERM set the flag (in the main thread; elsewhere nothing sets it)."""
    stop = StopFlag()
    previous = {}
    try:
        if threading.current_thread() is threading.main_thread():
            for number in (signal.SIGINT, signal.SIGTERM):
                previous[number] = signal.signal(number, lambda _n, _f: stop.set())
        yield stop
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        stop.close()

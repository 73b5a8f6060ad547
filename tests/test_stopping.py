"""SIGINT/SIGTERM stop a batch or a worker whatever the main thread is doing when they arrive."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from tests.batch.helpers import batch_env

# 2,000 rounds under a flood of SIGTERM from another process (which stops when this one
# ends), each round waiting on a new stop flag as the main thread of ``batch --watch``
# waits between passes.  With a threading.Event as the flag this hung or died within a
# few hundred rounds: its set(), called by the handler, takes the lock that the
# interrupted wait() holds.
_SCRIPT = textwrap.dedent(
    """
    import os, signal, subprocess, sys
    from leukofhir.stopping import stop_on_signals

    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # between the rounds
    flood = (
        "import os, signal, time\\n"
        "parent = os.getppid()\\n"
        "while os.getppid() == parent:\\n"
        "    os.kill(parent, signal.SIGTERM)\\n"
        "    time.sleep(0.00005)\\n"
    )
    killer = subprocess.Popen([sys.executable, "-c", flood])
    try:
        for _ in range(2000):
            with stop_on_signals() as stop:
                while not stop.wait(0.00001):
                    pass
    finally:
        killer.kill()
        killer.wait()
    print("stopped 2000 times")
    """
)


def test_a_signal_during_a_wait_on_the_stop_flag_never_hangs() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _SCRIPT], env=batch_env(), capture_output=True, timeout=120
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert done.stdout.strip() == b"stopped 2000 times"

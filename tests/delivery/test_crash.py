"""The delivering process SIGKILLed three times in the middle of its work, then resumed:
the server ends with what the plain route gives.  A document whose write the server had
applied when the process died (no delivered mark yet) is sent again, which changes nothing,
the Provenance included (written on a condition naming its document)."""

from __future__ import annotations

import contextlib
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from leukofhir.delivery import SqliteOutbox
from tests.conftest import ROOT
from tests.delivery.conftest import Oracle
from tests.delivery.helpers import DOCS, deliver, fresh_outbox
from tests.fhirserver import FhirServer, canonical

KILLS = 3


def delivered(outbox: Path) -> int:
    with contextlib.closing(sqlite3.connect(outbox, timeout=10)) as db:
        (count,) = db.execute("SELECT COUNT(*) FROM outbox WHERE state = 'delivered'").fetchone()
    return int(count)


def test_sigkill_three_times_then_resume(fhir: FhirServer, oracle: Oracle, tmp_path: Path) -> None:
    expected = oracle(DOCS)
    fhir.reset()
    fresh_outbox(tmp_path).close()
    path = tmp_path / "outbox.sqlite"
    kills = 0
    for _ in range(KILLS):
        before = delivered(path)
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.delivery.deliver_process", str(path), fhir.base],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while delivered(path) < before + 2 and process.poll() is None:
            assert time.monotonic() < deadline
            time.sleep(0.005)
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            kills += 1
        process.wait()
    assert kills == KILLS  # each kill came in the middle
    assert delivered(path) < len(DOCS)

    with SqliteOutbox.open(path, dead_letters=tmp_path / "dead") as outbox:
        summary = deliver(outbox, fhir.base)
    assert summary.dead == 0
    assert delivered(path) == len(DOCS)
    dump = fhir.dump()
    assert canonical(dump) == expected
    assert sum(r["resourceType"] == "Provenance" for r in dump) == len(DOCS)

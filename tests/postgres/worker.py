"""A settling process for the shared-state tests: ``python -m tests.postgres.worker URL
[--crash] FILE...`` settles each file's message against a :class:`PostgresStore`, one
transaction per message (as ``replay --state URL`` does).  It prints ``ready`` once
imported and starts when a line arrives on stdin, so that two workers start together.

``--crash``: the process kills itself (SIGKILL) inside the transaction of its first
message, after the save and before the commit, having printed ``saved``."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

from leukofhir.lifecycle.pgstore import PostgresStore
from leukofhir.lifecycle.settle import patients_of, settle_message
from leukofhir.pipeline import process
from tests.conftest import make_context


def main(argv: list[str]) -> int:
    url, *rest = argv
    crash = "--crash" in rest
    files = [Path(name) for name in rest if name != "--crash"]
    context = make_context()
    store = PostgresStore(url)
    print("ready", flush=True)
    sys.stdin.readline()
    for path in files:
        for outcome in process(path.read_bytes(), context):
            with store.transaction(patients_of(outcome)):
                _, states = settle_message(outcome, store.load, context.rule_set)
                store.save(states)
                if crash:
                    print("saved", flush=True)
                    os.kill(os.getpid(), signal.SIGKILL)
    store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""``python -m tests.delivery.deliver_process OUTBOX BASE``: deliver what the outbox holds
(concurrency 4) and exit; test_crash kills it with SIGKILL on the way."""

from __future__ import annotations

import sys
from pathlib import Path

from leukofhir.delivery import SqliteOutbox
from tests.delivery.helpers import deliver


def main() -> None:
    outbox_path, base = sys.argv[1:3]
    outbox = SqliteOutbox.open(Path(outbox_path), dead_letters=Path(outbox_path).parent / "dead")
    deliver(outbox, base)


if __name__ == "__main__":
    main()

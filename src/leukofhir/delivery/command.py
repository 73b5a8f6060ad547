"""``leukofhir deliver OUT``: the operator's tool for the outbox of a batch (``OUT/ledger.sqlite``)
or of the service (``OUT/journal.sqlite``): send what is pending, re-send the dead letters
after a fix (``--retry-dead``), give dead letters up (``--abandon ID``), or only print the
counts (``--status``).

Exit: 0 nothing left (every document delivered or abandoned), 1 documents left (dead
letters, documents held behind them, or pending ones not sent), 2 usage error, 3 delivery
stopped (401/403, an untrusted certificate) or another process delivers from OUT.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from leukofhir.delivery.options import add_delivery_arguments, delivery_options
from leukofhir.errors import UsageError

if TYPE_CHECKING:  # the parser is built at every start; the rest loads for `deliver` only
    import sqlite3

    from leukofhir.delivery.outbox import SqliteOutbox

__all__ = ["BASE_META", "DATABASES", "add_deliver_parser", "remember_base"]

DATABASES = ("ledger.sqlite", "journal.sqlite")  # batch, serve
BASE_META = "fhir_base"  # outbox_meta: the server the documents were queued for


def add_deliver_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    deliver = commands.add_parser(
        "deliver",
        help="send what a batch or the service queued for the FHIR server; dead letters",
        description="Deliver the documents pending in OUT (a batch's ledger or the service's"
        " journal) to the FHIR server they were queued for (or --fhir-base), one patient's in"
        " order; print the counts. Exit: 0 nothing left, 1 dead letters or documents left,"
        " 2 usage error, 3 delivery stopped (401/403) or OUT busy with another deliverer.",
    )
    deliver.add_argument(
        "out", metavar="OUT", help="the batch's or service's OUT, or the service's --journal URL"
    )
    action = deliver.add_mutually_exclusive_group()
    action.add_argument("--status", action="store_true", help="print the counts, send nothing")
    action.add_argument(
        "--retry-dead",
        action="store_true",
        help="queue the dead letters again (after a fix), then deliver",
    )
    action.add_argument(
        "--abandon",
        type=int,
        nargs="+",
        metavar="ID",
        help="give these dead letters up (kept, marked abandoned); their patients' later"
        " documents go on",
    )
    deliver.add_argument(
        "--fhir-base", metavar="URL", help="the server (default: the one they were queued for)"
    )
    add_delivery_arguments(deliver, base=False)
    deliver.set_defaults(run=deliver_command)


def remember_base(db: sqlite3.Connection, base: str) -> None:
    db.execute("INSERT OR REPLACE INTO outbox_meta VALUES (?, ?)", (BASE_META, base))


def deliver_command(args: argparse.Namespace) -> int:
    import asyncio

    from leukofhir.delivery.background import deliver_outbox
    from leukofhir.delivery.lock import DeliveryBusyError, DeliveryLock
    from leukofhir.logs import get_logger

    outbox = _open(args.out)
    try:
        if args.status:
            _print_status(outbox, None)
            return _exit_code(outbox)
        if args.abandon:
            print(f"abandoned: {outbox.abandon(args.abandon)}", file=sys.stderr)
            _print_status(outbox, None)
            return _exit_code(outbox)
        stored = outbox.meta(BASE_META)
        options = delivery_options(args, os.environ, base=args.fhir_base or stored or "")
        if options is None:
            raise UsageError("no FHIR server: give --fhir-base (nothing was queued with one)")
        # a folder's file lock; PostgreSQL's deliverers share by claims (delivery.pgoutbox)
        lock = DeliveryLock(Path(args.out)) if _folder(args.out) else None
        try:
            if lock is not None:
                lock.acquire()
        except DeliveryBusyError as exc:
            print(f"leukofhir: {exc}", file=sys.stderr)
            return 3
        try:
            if args.retry_dead:
                print(f"dead letters queued again: {outbox.retry_dead()}", file=sys.stderr)
            summary = asyncio.run(deliver_outbox(outbox, options))
        finally:
            if lock is not None:
                lock.release()
        get_logger("leukofhir.deliver").info(
            "deliver finished",
            attempts=summary.attempts,
            delivered=summary.delivered,
            retried=summary.retried,
            dead=summary.dead,
        )
        _print_status(outbox, summary.stopped.reason if summary.stopped else "")
        return 3 if summary.stopped else _exit_code(outbox)
    finally:
        outbox.close()


def _folder(out: str) -> bool:
    from leukofhir.lifecycle.store import POSTGRES_SCHEMES

    return not out.startswith(POSTGRES_SCHEMES)


def _open(out: str) -> SqliteOutbox:
    """The outbox of a batch's or service's OUT, or of a service's PostgreSQL journal."""
    from leukofhir.delivery.outbox import SqliteOutbox

    if not _folder(out):
        from leukofhir.serve.pgjournal import open_outbox

        return open_outbox(out)
    return SqliteOutbox.open(_database(Path(out)), dead_letters=Path(out) / "dead")


def _database(out: Path) -> Path:
    for name in DATABASES:
        if (out / name).is_file():
            return out / name
    raise UsageError(f"no {' or '.join(DATABASES)} in {out} (OUT of a batch or of the service)")


def _exit_code(outbox: SqliteOutbox) -> int:
    counts = outbox.counts(time.time())
    return 1 if counts.pending or counts.dead else 0


def _print_status(outbox: SqliteOutbox, stopped: str | None) -> None:
    status: dict[str, Any] = outbox.counts(time.time()).report()
    if stopped:
        status["stopped"] = stopped
    letters = [
        {"id": letter.id, "key": letter.key, "status": letter.status, "reason": letter.reason}
        for letter in outbox.dead_letters()
    ]
    if not sys.stdout.isatty():
        print(json.dumps({**status, "dead_letters": letters}, ensure_ascii=False))
        return
    print(", ".join(f"{k.replace('_', ' ')} {v}" for k, v in status.items() if v is not None))
    for letter in letters:
        print(f"dead letter {letter['id']}: {letter['key']}: {letter['reason']}")

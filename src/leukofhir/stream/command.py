"""The ``leukofhir worker`` command line (light: the stream stack loads in the command)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from leukofhir.delivery.options import add_delivery_arguments, delivery_options
from leukofhir.errors import UsageError

if TYPE_CHECKING:
    from leukofhir.context import Settings
    from leukofhir.delivery.options import DeliveryOptions
    from leukofhir.stream.settings import StreamSettings

__all__ = ["add_worker_parser"]


def add_worker_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    worker = commands.add_parser(
        "worker",
        help="process the messages leukofhir serve --publish put on NATS JetStream",
        description="Pull messages from the stream (one durable consumer per partition),"
        " process each, settle it against the patients' states, write its outputs (the"
        " layout of serve) and only then acknowledge it. Give each partition to one worker"
        " at a time. Stops cleanly on SIGTERM/SIGINT. Exit 0 after a stop, 2 on a bad"
        " option, 3 when the broker, the state store or the outputs fail.",
    )
    worker.add_argument("--nats", required=True, metavar="URL", help="nats://HOST:PORT")
    worker.add_argument("--out", type=Path, required=True, metavar="DIR", help="outputs")
    worker.add_argument(
        "--state",
        metavar="FILE|URL",
        help="patients' states: a SQLite file or postgresql://... (OUT/states.sqlite)",
    )
    worker.add_argument(
        "--partition",
        type=int,
        action="extend",
        nargs="+",
        metavar="K",
        help="the partitions this worker consumes (all)",
    )
    worker.add_argument("--stream", default="LEUKOFHIR", metavar="NAME", help="(LEUKOFHIR)")
    worker.add_argument(
        "--ack-wait",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="an unacknowledged message comes again after (30)",
    )
    worker.add_argument(
        "--batch", type=int, default=32, metavar="N", help="unacknowledged per partition (32)"
    )
    from leukofhir.cli import PROCESSING_OPTIONS  # loaded: it builds this parser

    for flag in ("--mapping", "--timezone", "--profile", "--notify-critical"):
        worker.add_argument(flag, **PROCESSING_OPTIONS[flag])
    add_delivery_arguments(worker)
    worker.set_defaults(run=worker_command)


def worker_command(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from leukofhir.context import Settings
    from leukofhir.errors import LeukofhirError
    from leukofhir.stream.settings import StreamSettings, check_url

    try:
        check_url(args.nats)
    except ValueError as exc:
        raise UsageError(f"--nats: {exc}") from None
    if args.ack_wait <= 0 or args.batch < 1:
        raise UsageError("--ack-wait must be positive and --batch at least 1")
    settings = Settings(
        mappings=tuple(str(m) for m in args.mapping),
        timezone=args.timezone,
        profile=str(args.profile or ""),
        notify_critical=args.notify_critical,
    )
    try:
        settings.context(datetime.now(UTC))  # a bad mapping, zone or profile stops here
    except (LeukofhirError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    fhir = delivery_options(args, os.environ)
    stream = StreamSettings(stream=args.stream, ack_wait=args.ack_wait, batch=args.batch)
    return _run(args, settings, stream, fhir)


def _run(
    args: argparse.Namespace,
    settings: Settings,
    stream: StreamSettings,
    fhir: DeliveryOptions | None,
) -> int:
    from leukofhir.cli import state_store
    from leukofhir.logs import get_logger

    log = get_logger("leukofhir.worker")
    try:
        from leukofhir.stream.jetstream import JetStreamTransport, UnavailableError
    except ImportError as exc:
        raise UsageError(f"--nats: {exc.name} is missing: pip install 'leukofhir[nats]'") from None
    from leukofhir.stopping import stop_on_signals
    from leukofhir.stream.worker import StopWorker, Worker

    args.out.mkdir(parents=True, exist_ok=True)
    store = state_store(args.state or str(args.out / "states.sqlite"))
    try:
        transport = JetStreamTransport(
            args.nats,
            stream,
            consume=None if args.partition is None else sorted(set(args.partition)),
            create=False,
        )
    except UnavailableError as exc:
        store.close()
        print(f"leukofhir: worker: {exc}", file=sys.stderr)
        return 3
    delivery = None
    if fhir is not None:
        from leukofhir.delivery.now import DeliveryNow

        delivery = DeliveryNow(fhir)
    worker = Worker(store, args.out, settings, fhir=delivery)
    log.info(
        "worker_ready",
        stream=transport.settings.stream,
        partitions=args.partition or f"all {transport.partitions}",
        pid=os.getpid(),
    )
    code = 0
    try:
        with stop_on_signals() as stop:
            worker.run(transport, stop)
    except (StopWorker, OSError) as exc:
        print(f"leukofhir: worker: {exc}", file=sys.stderr)
        code = 3
    except Exception as exc:  # the state store (sqlite3, psycopg): the message comes again
        log.error("worker_failed", error=type(exc).__name__)
        print(f"leukofhir: worker: the state store failed: {exc}", file=sys.stderr)
        code = 3
    finally:
        transport.close()
        store.close()
        if delivery is not None:
            delivery.close()
    log.info("worker_stopped", messages=worker.counts.messages, failed=worker.counts.failed)
    return code

"""The ``leukofhir serve`` command line (options → :class:`ServeConfig` → the service) and
``leukofhir journal`` (the service's journal: counts, failed messages, retry, drop)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from leukofhir.context import Settings
from leukofhir.errors import LeukofhirError, UsageError

if TYPE_CHECKING:
    from leukofhir.delivery.options import DeliveryOptions
    from leukofhir.serve.config import ServeConfig

__all__ = ["add_journal_parser", "add_serve_parser"]

_FAILED_COLUMNS = ("id", "received", "sender", "control_id", "format", "reason")

_OPTIONS: tuple[tuple[str, dict[str, object]], ...] = (
    ("--out", {"type": Path, "metavar": "DIR", "help": "journal and outputs (leukofhir-out)"}),
    ("--sink", {"choices": ("folder", "stdout"), "help": "where outputs go (folder)"}),
    ("--mllp", {"metavar": "HOST:PORT", "help": "MLLP listener, or 'off' (127.0.0.1:2575)"}),
    ("--http", {"metavar": "HOST:PORT", "help": "HTTP listener, or 'off' (127.0.0.1:8080)"}),
    ("--workers", {"type": int, "metavar": "N", "help": "service processes (cores; 0, 1: one)"}),
    ("--max-frame", {"type": int, "metavar": "BYTES", "help": "largest MLLP frame (1 MiB)"}),
    ("--max-connections", {"type": int, "metavar": "N", "help": "MLLP connections (64)"}),
    ("--idle-timeout", {"type": float, "metavar": "SECONDS", "help": "close idle (600; 0 never)"}),
    ("--mllp-release", {"type": int, "choices": (1, 2), "help": "2: MLLP/2 commit ACK blocks"}),
    ("--http-max-body", {"type": int, "metavar": "BYTES", "help": "largest request (1 MiB)"}),
    ("--fsync", {"action": "store_const", "const": True, "help": "fsync every output file"}),
    ("--journal-sync", {"choices": ("full", "normal"), "help": "full: survive power loss"}),
    (
        "--journal",
        {"metavar": "URL", "help": "postgresql://... shared by hosts (OUT/journal.sqlite)"},
    ),
    ("--mapping", {"type": Path, "action": "append", "dest": "mappings", "metavar": "FILE"}),
    ("--timezone", {"metavar": "ZONE", "help": "zone of HL7 times without offset (UTC)"}),
    ("--validate", {"action": "store_const", "const": True, "dest": "validate_output"}),
    ("--validate-structure", {"action": "store_const", "const": True}),
    ("--profile", {"type": Path, "metavar": "FILE", "help": "deployment profile (TOML)"}),
    (
        "--notify-critical",
        {"action": "store_const", "const": True, "help": "CommunicationRequest, critical values"},
    ),
    ("--shutdown-timeout", {"type": float, "metavar": "SECONDS", "help": "(30)"}),
    (
        "--journal-retention",
        {"metavar": "DURATION", "help": "keep done messages this long (30d; 12h; 0: forever)"},
    ),
    ("--fhir-base", {"metavar": "URL", "help": "deliver every Bundle to this FHIR server"}),
    ("--fhir-token-file", {"type": Path, "metavar": "FILE", "help": "its bearer token"}),
    ("--fhir-ca", {"type": Path, "metavar": "FILE", "help": "trust this CA bundle (PEM)"}),
    ("--fhir-server-profile", {"choices": ("default", "azure", "medplum")}),
    ("--fhir-concurrency", {"type": int, "metavar": "N", "help": "documents in flight (4)"}),
    ("--fhir-retry-for", {"metavar": "DURATION", "help": "then a dead letter (24h)"}),
    ("--fhir-timeout", {"type": float, "metavar": "SECONDS", "help": "(30)"}),
    (
        "--ack-after",
        {"choices": ("stored", "delivered"), "help": "AA once journaled (stored) or delivered"},
    ),
    ("--ack-timeout", {"type": float, "metavar": "SECONDS", "help": "delivered: AR after (30)"}),
    ("--publish", {"metavar": "URL", "help": "nats://HOST:PORT: workers process (JetStream)"}),
    ("--stream", {"metavar": "NAME", "help": "the JetStream stream (LEUKOFHIR)"}),
    ("--partitions", {"type": int, "metavar": "N", "help": "when creating the stream (16)"}),
    ("--publish-timeout", {"type": float, "metavar": "SECONDS", "help": "PubAck wait (5)"}),
)


def add_serve_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    serve = commands.add_parser(
        "serve",
        help="run the MLLP and HTTP listeners (localhost by default)",
        description="Listen for HL7 v2 over MLLP and HL7 v2/FHIR over HTTP; journal every"
        " message before answering it; write outputs to a folder (or stdout). Settings:"
        " options, then environment variables LEUKOFHIR_<NAME> (e.g. LEUKOFHIR_TOKEN), then"
        " --config FILE (TOML), then defaults. Stops cleanly on SIGTERM/SIGINT.",
    )
    serve.add_argument("--config", type=Path, metavar="FILE", help="settings file (TOML)")
    serve.add_argument(
        "--ready-file",
        type=Path,
        metavar="FILE",
        help="write the bound ports as JSON here once listening",
    )
    for flag, spec in _OPTIONS:
        serve.add_argument(flag, default=None, **spec)  # type: ignore[arg-type]
    serve.set_defaults(run=serve_command)


def serve_command(args: argparse.Namespace) -> int:
    import os
    import shutil

    from leukofhir.serve.config import load_config  # the service stack: for serve only

    names = [str(spec.get("dest", flag[2:].replace("-", "_"))) for flag, spec in _OPTIONS]
    values = {name: getattr(args, name) for name in names}
    try:
        config = load_config(values, file=args.config)
        # the mapping files read now, so that a bad one stops the start with its reason (the
        # profile was, by the config's validation)
        Settings(tuple(str(m) for m in config.mappings)).context(datetime.now(UTC))
        delivery = delivery_config(config, os.environ)
    except LeukofhirError as exc:
        raise UsageError(str(exc)) from None
    # every service process writes its metrics here; set before prometheus_client loads
    metrics = config.out / ".metrics"
    shutil.rmtree(metrics, ignore_errors=True)
    metrics.mkdir(parents=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics)
    from leukofhir.serve.service import serve

    try:
        return serve(config, ready_file=args.ready_file, delivery=delivery)
    except ConnectionError as exc:  # --publish: the broker cannot be reached
        print(f"leukofhir: serve: {exc}", file=sys.stderr)
        return 3


def delivery_config(config: ServeConfig, environ: Mapping[str, str]) -> DeliveryOptions | None:
    """The delivery options of ``config`` (the token read now: a bad one stops the start)."""
    from leukofhir.delivery.client import read_token
    from leukofhir.delivery.options import DeliveryOptions
    from leukofhir.delivery.profiles import PROFILES

    if not config.fhir_base:
        return None
    try:
        token = read_token(config.fhir_token_file, environ)
        options = DeliveryOptions(
            base=config.fhir_base.rstrip("/"),
            token=token,
            ca_file=config.fhir_ca,
            profile=PROFILES[config.fhir_server_profile],
            concurrency=config.fhir_concurrency,
            retry_for=config.fhir_retry_for,
            timeout=config.fhir_timeout,
        )
        options.server()
    except ValueError as exc:
        raise UsageError(f"fhir: {exc}") from None
    if options.ca_file is not None and not options.ca_file.is_file():
        raise UsageError(f"fhir_ca: no such file: {options.ca_file}")
    return options


def add_journal_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    journal = commands.add_parser(
        "journal",
        help="the service's journal: counts, failed messages, retry or drop one",
        description="Read or mend the journal of leukofhir serve (OUT/journal.sqlite, or"
        " its --journal postgresql:// URL), also"
        " while the service runs. Without an action: the messages by state and outcome."
        " Never prints message content.",
    )
    journal.add_argument(
        "out", metavar="OUT", help="the service's --out folder, or its --journal URL"
    )
    action = journal.add_mutually_exclusive_group()
    action.add_argument(
        "--failed",
        action="store_true",
        help="list the failed messages: id, received, sender, control id, format, reason",
    )
    action.add_argument(
        "--retry",
        type=int,
        metavar="ID",
        help="put failed message ID back: processed at the next start, by a running service"
        " within 10 s, or at once when the sender sends it again",
    )
    action.add_argument(
        "--drop", type=int, metavar="ID", help="delete failed message ID from the journal"
    )
    journal.add_argument(
        "--format",
        choices=("table", "ndjson"),
        default=None,
        help="table (default on a terminal) or ndjson (default otherwise)",
    )
    journal.set_defaults(run=journal_command)


def journal_command(args: argparse.Namespace) -> int:
    import sqlite3

    from leukofhir.lifecycle.store import POSTGRES_SCHEMES
    from leukofhir.pgsql import shown
    from leukofhir.serve.journal import JOURNAL_NAME, open_journal

    url = args.out if args.out.startswith(POSTGRES_SCHEMES) else ""
    path = shown(url) if url else Path(args.out) / JOURNAL_NAME
    if not url and not Path(path).is_file():
        raise UsageError(f"no journal at {path} (OUT is the --out folder of leukofhir serve)")
    ndjson = args.format == "ndjson" or (args.format is None and not sys.stdout.isatty())
    try:
        journal = open_journal(Path(args.out), url)
    except sqlite3.Error as exc:
        raise UsageError(f"{path}: {exc}") from None
    try:
        if args.retry is not None:
            _mend(journal.retry(args.retry), args.retry, "put back as received")
        elif args.drop is not None:
            _mend(journal.drop(args.drop), args.drop, "deleted")
        elif args.failed:
            rows = [asdict(f) for f in journal.failed()]
            _print([{k: row[k] for k in _FAILED_COLUMNS} for row in rows], ndjson)
        else:
            counts = journal.counts()
            _print([{"state": k, "messages": n} for k, n in sorted(counts.items())], ndjson)
    except sqlite3.Error as exc:
        raise UsageError(f"{path}: {exc}") from None
    finally:
        journal.close()
    return 0


def _mend(changed: bool, entry: int, what: str) -> None:
    if not changed:
        raise UsageError(f"journal entry {entry} is not a failed message (see --failed)")
    print(f"journal entry {entry}: {what}")


def _print(rows: list[dict[str, object]], ndjson: bool) -> None:
    import json

    if ndjson:
        for row in rows:
            print(json.dumps(row, ensure_ascii=False))
        return
    if not rows:
        print("(none)")
        return
    names = list(rows[0])
    cells = [names, *([_printable(str(row[n])) for n in names] for row in rows)]
    widths = [max(len(line[i]) for line in cells) for i in range(len(names) - 1)]
    for line in cells:
        print("  ".join([*(c.ljust(w) for c, w in zip(line, widths, strict=False)), line[-1]]))


def _printable(text: str) -> str:
    """A sender or control id as sent may hold control characters: not for a terminal."""
    return "".join(c if c.isprintable() else "?" for c in text)

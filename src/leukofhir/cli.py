"""``leukofhir`` command line: a thin shell over :func:`leukofhir.pipeline.process`.

Exit codes (``replay``): 0 nothing rejected, 1 at least one message rejected or a file
unreadable, 2 usage error (a path missing or not a file or folder, bad option, unusable
mapping file).
"""

from __future__ import annotations

import argparse
import os
import re
import stat
import sys
from collections import Counter
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from importlib import import_module
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from leukofhir import __version__
from leukofhir.context import FHIR_TARGETS, Context, Settings
from leukofhir.delivery.options import add_delivery_arguments, delivery_options
from leukofhir.errors import ConfigError, UsageError

# The pipeline, the lifecycle and the logs load in the command that runs (``--version``
# and ``--help`` need none of them): start-up is most of a short run (tests/test_imports.py)
if TYPE_CHECKING:
    from leukofhir.delivery.now import DeliveryNow
    from leukofhir.lifecycle.store import StateStore
    from leukofhir.logs import Logger
    from leukofhir.pipeline import MessageOutcome

FORMATS = ("ndjson", "json", "summary")
STREAMED_SUFFIXES = (".ndjson", ".jsonl")
_UNSAFE = r"[^A-Za-z0-9._-]+"  # patterns compiled on first use (re's cache): start-up
# Each command's sub-parser: (module, function adding it), in the order of ``--help``.  Only
# the one of the command that runs is built (start-up); all of them for ``--help``, errors.
COMMANDS = {
    "replay": ("leukofhir.cli", "_add_replay_parser"),
    "batch": ("leukofhir.cli", "_add_batch_parser"),
    "serve": ("leukofhir.serve.command", "add_serve_parser"),
    "journal": ("leukofhir.serve.command", "add_journal_parser"),
    "worker": ("leukofhir.stream.command", "add_worker_parser"),
    "deliver": ("leukofhir.delivery.command", "add_deliver_parser"),
}


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = _parser(_command(argv))
    args = parser.parse_args(argv)
    from leukofhir.logs import configure

    configure(json=None if args.log_format == "auto" else args.log_format == "json")
    try:
        return int(args.run(args))
    except UsageError as exc:
        print(f"leukofhir: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `leukofhir replay ... | head`
        return 0


def _command(argv: Sequence[str]) -> str | None:
    """The command ``argv`` names, as argparse finds it: the first word that is neither an
    option nor the value of ``--log-format`` (or an abbreviation of it); None before it
    asks for the help, which lists every command."""
    words = iter(argv)
    for word in words:
        if word == "-h" or (len(word) > 2 and "--help".startswith(word)):
            return None
        if word == "--":
            return next(words, None)
        if word == "-" or not word.startswith("-"):
            return word
        if "=" not in word and len(word) > 2 and "--log-format".startswith(word):
            next(words, None)  # its value
    return None


def _parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser, with the sub-parser of ``command`` only when it is one of ours."""
    parser = argparse.ArgumentParser(
        prog="leukofhir",
        description="CBC lab results (HL7 v2 ORU^R01/OUL^R22, FHIR R4) → leukopenia rule set →"
        " FHIR R4 transaction Bundles.",
    )
    parser.add_argument("--version", action="version", version=f"leukofhir {__version__}")
    parser.add_argument(
        "--log-format",
        choices=("auto", "json", "console"),
        default="auto",
        help="logs on stderr: JSON when not a terminal (auto)",
    )
    commands = parser.add_subparsers(required=True, metavar="COMMAND")
    for name, (module, add_parser) in COMMANDS.items():
        if command not in COMMANDS or command == name:
            getattr(import_module(module), add_parser)(commands)
    return parser


def _add_replay_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    replay = commands.add_parser(
        "replay",
        help="process message files and print the FHIR results",
        description="Process HL7 v2 files (one message, several, FHS/BHS batches, MLLP frames)"
        " or FHIR files (a resource, a Bundle, NDJSON) and print one FHIR document per"
        " report/outcome.",
    )
    replay.add_argument(
        "paths",
        nargs="+",
        type=Path,
        metavar="PATH",
        help="files or folders (folders are read recursively, dotfiles skipped)",
    )
    replay.add_argument(
        "--format",
        choices=FORMATS,
        default=None,
        help="ndjson (default when stdout is not a terminal), json (indented"
        " array), summary (default on a terminal)",
    )
    replay.add_argument(
        "--format-in",
        choices=("auto", "hl7v2", "fhir"),
        default="auto",
        help="input format: auto (FHIR when a file starts with '{' or '[', else HL7 v2)",
    )
    replay.add_argument(
        "--out",
        type=Path,
        metavar="DIR",
        help="write one file per Bundle/OperationOutcome into DIR instead",
    )
    for flag in ("--mapping", "--timezone"):
        replay.add_argument(flag, **PROCESSING_OPTIONS[flag])
    replay.add_argument(
        "--now",
        metavar="INSTANT",
        help="processing time for Provenance.recorded (ISO 8601 with offset);"
        " default: the clock. Fix it for byte-identical re-runs",
    )
    replay.add_argument("--fhir-target", **PROCESSING_OPTIONS["--fhir-target"])
    for flag in ("--profile", "--notify-critical"):
        replay.add_argument(flag, **PROCESSING_OPTIONS[flag])
    replay.add_argument(
        "--state",
        metavar="FILE|URL",
        help="keep the patients' lifecycle state (standing Flags, report versions) across"
        " runs in this SQLite file, or in PostgreSQL (postgresql://USER@HOST/DB: shared by"
        " processes and hosts, a lock per patient; needs leukofhir[postgres]); default: in"
        " memory, across the files of this run",
    )
    replay.add_argument(
        "--validate",
        action="store_true",
        help="check every Bundle against the fhir.resources R4B models",
    )
    replay.add_argument(
        "--validate-structure",
        action="store_true",
        help="check each message against its HL7 version's structure (hl7apy);"
        " findings are reported as warnings",
    )
    add_delivery_arguments(replay)
    replay.set_defaults(run=replay_command)


def _add_batch_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    batch = commands.add_parser(
        "batch",
        help="process a folder of message files into OUT: parallel, exactly once, resumable",
        description="Process every file under IN (recursively; by modification time, then"
        " name, per folder) into OUT, with a ledger that makes re-runs process only what is"
        " new or changed. Exit: 0 nothing rejected, 1 rejected messages or unreadable files,"
        " 2 usage error, 3 stopped because OUT is not writable (e.g. full): fix it and re-run.",
    )
    batch.add_argument("source", type=Path, metavar="IN", help="folder (or file) to read")
    batch.add_argument("--out", type=Path, required=True, metavar="OUT", help="output folder")
    batch.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count() or 1,
        metavar="N",
        help="worker processes (default: the number of cores; 1: no pool)",
    )
    batch.add_argument(
        "--dask",
        metavar="ADDRESS",
        help="run the work on Dask: a scheduler (tcp://HOST:8786; IN and OUT on a file system"
        " the workers share) or 'local' (a cluster of --workers processes on 127.0.0.1);"
        " needs pip install 'leukofhir[dask]'",
    )
    batch.add_argument(
        "--min-age",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="leave files modified more recently for the next pass (default 1)",
    )
    batch.add_argument("--fsync", action="store_true", help="fsync every output (durable, slower)")
    batch.add_argument(
        "--retry-rejected", action="store_true", help="process rejected messages again"
    )
    batch.add_argument(
        "--move-processed", type=Path, metavar="DIR", help="move finished input files to DIR"
    )
    batch.add_argument(
        "--move-rejected",
        type=Path,
        metavar="DIR",
        help="move input files with a rejected message to DIR",
    )
    batch.add_argument(
        "--watch", action="store_true", help="keep running: process files as they arrive"
    )
    batch.add_argument(
        "--interval", type=float, default=2.0, metavar="SECONDS", help="--watch: pause"
    )
    batch.add_argument(
        "--progress",
        choices=("auto", "bar", "log"),
        default="auto",
        help="a progress bar (auto: on a terminal) or periodic log lines",
    )
    for flag in (
        "--mapping",
        "--timezone",
        "--now",
        "--fhir-target",
        "--validate",
        "--validate-structure",
        "--profile",
        "--notify-critical",
    ):
        batch.add_argument(flag, **PROCESSING_OPTIONS[flag])
    add_delivery_arguments(batch)
    batch.add_argument(
        "--fhir-queue-only",
        action="store_true",
        help="with --fhir-base: queue every Bundle in the ledger's outbox, send nothing now"
        " (leukofhir deliver OUT sends them later)",
    )
    batch.set_defaults(run=batch_command)


PROCESSING_OPTIONS: dict[str, dict[str, Any]] = {
    "--mapping": {
        "type": Path,
        "action": "append",
        "default": [],
        "metavar": "FILE",
        "help": "local code → LOINC mapping (FHIR ConceptMap JSON or CSV); repeatable",
    },
    "--timezone": {
        "default": "UTC",
        "metavar": "ZONE",
        "help": "IANA zone for HL7 times sent without an offset (default UTC)",
    },
    "--now": {
        "metavar": "INSTANT",
        "help": "processing time (Provenance.recorded); default: the clock at the start of"
        " a pass, kept in the ledger until the pass completes (so a resumed run writes the"
        " same bytes)",
    },
    "--fhir-target": {
        "choices": FHIR_TARGETS,
        "default": "other",
        "help": "FHIR input: 'other' (default) writes the input's Patient, Observations and"
        " DiagnosticReport too, by identifier, so that the output loads into any server;"
        " 'source' refers to them as sent, to write back to the server they came from",
    },
    "--validate": {"action": "store_true", "help": "check every Bundle (fhir.resources)"},
    "--profile": {
        "type": Path,
        "metavar": "FILE",
        "help": "deployment profile (TOML): its adult lower ANC limit and intervals, a file of"
        " patients' own lower ANC limits, another paediatric profile (README: clinical context)",
    },
    "--notify-critical": {
        "action": "store_true",
        "help": "a CommunicationRequest to the ordering provider once per critical episode",
    },
    "--validate-structure": {
        "action": "store_true",
        "help": "check each message against its HL7 version's structure (hl7apy)",
    },
}


def batch_command(args: argparse.Namespace) -> int:
    from leukofhir.batch import BatchError, BatchOptions, run_batch

    check_paths([args.source])
    if args.workers < 1:
        raise UsageError("--workers must be at least 1")
    context = build_context(args)  # checks --now, --timezone and --mapping
    options = BatchOptions(
        source=args.source,
        out=args.out,
        workers=args.workers,
        min_age=args.min_age,
        fsync=args.fsync,
        retry_rejected=args.retry_rejected,
        move_processed=args.move_processed,
        move_rejected=args.move_rejected,
        now=context.now if args.now else None,
        mappings=tuple(args.mapping),
        timezone=args.timezone,
        fhir_target=args.fhir_target,
        profile=str(args.profile or ""),
        notify_critical=args.notify_critical,
        validate_output=args.validate,
        validate_structure=args.validate_structure,
        watch=args.watch,
        interval=args.interval,
        progress=None if args.progress == "auto" else args.progress == "bar",
        delivery=delivery_options(args, os.environ),
        queue_only=args.fhir_queue_only,
        dask=args.dask,
    )
    if args.dask is not None:
        from leukofhir.batch.executor import check_dask

        check_dask(args.dask)
    if args.fhir_queue_only and options.delivery is None:
        raise UsageError("--fhir-queue-only needs --fhir-base")
    from leukofhir.batch.summary import render_summary
    from leukofhir.logs import get_logger

    try:
        result = run_batch(options, get_logger("leukofhir.batch"))
    except BatchError as exc:
        print(f"leukofhir: {exc}", file=sys.stderr)
        return 3
    print(render_summary(result.summary))
    if result.error:
        print(f"leukofhir: {result.error}", file=sys.stderr)
    return result.exit_code


def build_context(args: argparse.Namespace) -> Context:
    from leukofhir.ingest.dtm import DtmError, zone

    try:
        zone(args.timezone)
    except DtmError as exc:
        raise UsageError(f"--timezone: {exc}") from exc
    if args.now:
        try:
            now = datetime.fromisoformat(args.now.replace("Z", "+00:00"))
        except ValueError as exc:
            raise UsageError(f"--now: {args.now!r} is not an ISO 8601 instant") from exc
        if now.tzinfo is None:
            raise UsageError("--now needs an offset, e.g. 2026-01-01T00:00:00Z")
    else:
        now = datetime.now(UTC).replace(microsecond=0)
    for mapping in args.mapping:
        if not mapping.is_file():
            raise UsageError(f"--mapping: no such file: {mapping}")
    settings = Settings(
        mappings=tuple(str(m) for m in args.mapping),
        timezone=args.timezone,
        validate_structure=args.validate_structure,
        validate_output=args.validate,
        fhir_target=args.fhir_target,
        profile=str(args.profile or ""),
        notify_critical=args.notify_critical,
    )
    try:
        return settings.context(now)
    except ConfigError as exc:
        raise UsageError(str(exc)) from exc


def check_paths(paths: Sequence[Path]) -> None:
    """Every path named must be a file or a folder: one that is missing (or a broken link)
    or is a FIFO, socket or device is a usage error, found before anything is read (a FIFO
    would be waited on for ever).  A path that cannot be looked at (permission) is left to
    the read, which reports it as unreadable."""
    from leukofhir.inputfile import kind

    problems = []
    for path in paths:
        try:
            info = path.stat()
        except FileNotFoundError:
            what = "broken symbolic link" if path.is_symlink() else "no such file or folder"
            problems.append(f"{what}: {path}")
            continue
        except OSError:
            continue
        if not (stat.S_ISDIR(info.st_mode) or stat.S_ISREG(info.st_mode)):
            problems.append(f"not a file or folder (a {kind(info.st_mode)}), not read: {path}")
    if problems:
        raise UsageError("; ".join(problems))


def replay_command(args: argparse.Namespace) -> int:
    from leukofhir.emit.jsonio import dumps
    from leukofhir.inputfile import PassedOver, input_files
    from leukofhir.logs import get_logger

    check_paths(args.paths)
    context = build_context(args)
    delivery = _delivery_now(args)
    fmt = args.format or ("summary" if sys.stdout.isatty() and not args.out else "ndjson")
    log = get_logger("leukofhir.replay")
    counts: Counter[str] = Counter()
    collected: list[object] = []
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
    if fmt == "summary" and not args.out:
        from leukofhir.render import SummaryPrinter

        summary: SummaryPrinter | None = SummaryPrinter()
    else:
        summary = None
    store = state_store(args.state)
    try:
        for path in input_files(args.paths):
            if isinstance(path, PassedOver):
                if path.unreadable:
                    log.error("file unreadable", file=str(path.path), error=path.reason)
                else:
                    log.warning("path skipped", file=str(path.path), reason=path.reason)
                counts["unreadable files" if path.unreadable else "skipped paths"] += 1
                continue
            try:
                outcomes = _outcomes(path, context, args.format_in)
            except OSError as exc:
                log.error("file unreadable", file=str(path), error=exc.strerror or str(exc))
                counts["unreadable files"] += 1
                continue
            for outcome in outcomes:
                outcome = _settled(outcome, store, context)
                counts[outcome.disposition.value] += 1
                _log_outcome(log, path, outcome)
                if delivery is not None:
                    _deliver(delivery, path, outcome)
                if args.out:
                    _write_files(args.out, path, outcome, indent=fmt == "json")
                elif summary is not None:
                    summary.print(path, outcome)
                elif fmt == "json":
                    collected.extend(outcome.documents())
                else:
                    _write_ndjson(outcome)
    finally:
        store.close()
        if delivery is not None:
            delivery.close()
    if fmt == "json" and not args.out:
        sys.stdout.buffer.write(dumps(collected, indent=True) + b"\n")
    if summary is not None:
        summary.totals(counts)
    log.info("replay finished", **{k.replace(" ", "_"): v for k, v in counts.items()})
    if delivery is not None and delivery.stopped:
        print(f"leukofhir: FHIR delivery stopped: {delivery.stopped}", file=sys.stderr)
        return 3
    undelivered = delivery is not None and set(delivery.counts) - {"delivered"}
    return 1 if counts["rejected"] or counts["unreadable files"] or undelivered else 0


def _delivery_now(args: argparse.Namespace) -> DeliveryNow | None:
    options = delivery_options(args, os.environ)
    if options is None:
        return None
    from leukofhir.delivery.now import DeliveryNow

    return DeliveryNow(options)


def _deliver(delivery: DeliveryNow, source: Path, outcome: MessageOutcome) -> None:
    """Each Bundle of the message to the server before the next message is read."""
    from leukofhir.emit.jsonio import dumps

    stem = f"{source.name}.m{outcome.index + 1:04d}"
    for suffix, document in outcome.named_documents():
        if document.get("resourceType") == "Bundle":
            delivery.send(stem + suffix.removesuffix(".bundle.json"), dumps(document))


def state_store(where: str | None) -> StateStore:
    from leukofhir.lifecycle.store import POSTGRES_SCHEMES, MemoryStore, open_store

    if where is None:
        return MemoryStore()
    import sqlite3

    secret = where.startswith(POSTGRES_SCHEMES) and "@" in where  # user:password@
    shown = where.partition("@")[2] if secret else where
    try:
        return open_store(where)
    except ImportError as exc:
        missing = f"--state: {exc.name} is missing: pip install 'leukofhir[postgres]'"
        raise UsageError(missing) from exc
    except (sqlite3.Error, OSError) as exc:  # PostgresStore: ConnectionError
        raise UsageError(f"--state: {shown}: {exc}") from exc


def _settled(outcome: MessageOutcome, store: StateStore, context: Context) -> MessageOutcome:
    """The outcome with its Bundles settled against the patients' history (``store``), in
    one transaction that holds the message's patients."""
    from leukofhir.lifecycle.settle import patients_of, settle_message

    patients = patients_of(outcome)
    if not patients:  # nothing to read or write
        return settle_message(outcome, store.load, context.rule_set)[0]
    with store.transaction(patients):
        outcome, states = settle_message(outcome, store.load, context.rule_set)
        if states:
            store.save(states)
    return outcome


def _outcomes(path: Path, context: Context, input_format: str) -> Iterator[MessageOutcome]:
    """A file's outcomes; NDJSON files are streamed line by line (bounded memory), others
    read whole.  Raises OSError here, not later, when the file cannot be opened."""
    from leukofhir.inputfile import open_input, read_input
    from leukofhir.pipeline import process

    if input_format != "hl7v2" and path.suffix.lower() in STREAMED_SUFFIXES:
        return _streamed(open_input(path)[0], context)
    return process(read_input(path)[0], context, input_format=input_format)


def _streamed(handle: BinaryIO, context: Context) -> Iterator[MessageOutcome]:
    from leukofhir.pipeline import process_ndjson

    with handle:
        yield from process_ndjson(handle, context)


def _write_ndjson(outcome: MessageOutcome) -> None:
    from leukofhir.emit.jsonio import dumps

    out = sys.stdout.buffer
    for document in outcome.documents():
        out.write(dumps(document) + b"\n")
    out.flush()


def _write_files(folder: Path, source: Path, outcome: MessageOutcome, *, indent: bool) -> None:
    from leukofhir.emit.jsonio import dumps

    stem = re.sub(_UNSAFE, "_", source.name).strip("._") or "input"
    base = f"{stem}.m{outcome.index + 1:04d}"
    for suffix, document in outcome.named_documents():
        (folder / f"{base}{suffix}").write_bytes(dumps(document, indent=indent))


def _log_outcome(log: Logger, path: Path, outcome: MessageOutcome) -> None:
    from leukofhir.pipeline import Disposition

    message = outcome.message
    fields = {
        "file": str(path),
        "message": outcome.index + 1,
        "control_id": outcome.control_id,
        "sending_facility": message.sending_facility if message else "",
        "outcome": outcome.disposition.value,
        "reports": len(outcome.reports),
        "findings": sum(len(r.evaluation.findings) for r in outcome.reports),
        "issues": len(outcome.issues),
    }
    emit = log.warning if outcome.disposition is Disposition.REJECTED else log.info
    emit("message", **fields)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

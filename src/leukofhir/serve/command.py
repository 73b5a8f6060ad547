"""The ``leukofhir serve`` command line: options → :class:`ServeConfig` → the service."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path

from leukofhir.context import Settings
from leukofhir.errors import LeukofhirError, UsageError
from leukofhir.serve.config import load_config

__all__ = ["add_serve_parser"]

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
    ("--mapping", {"type": Path, "action": "append", "dest": "mappings", "metavar": "FILE"}),
    ("--timezone", {"metavar": "ZONE", "help": "zone of HL7 times without offset (UTC)"}),
    ("--validate", {"action": "store_const", "const": True, "dest": "validate_output"}),
    ("--validate-structure", {"action": "store_const", "const": True}),
    ("--shutdown-timeout", {"type": float, "metavar": "SECONDS", "help": "(30)"}),
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

    names = [str(spec.get("dest", flag[2:].replace("-", "_"))) for flag, spec in _OPTIONS]
    values = {name: getattr(args, name) for name in names}
    try:
        config = load_config(values, file=args.config)
        # the mapping files read now, so that a bad one stops the start with its reason
        Settings(tuple(str(m) for m in config.mappings)).context(datetime.now(UTC))
    except LeukofhirError as exc:
        raise UsageError(str(exc)) from None
    # every service process writes its metrics here; set before prometheus_client loads
    metrics = config.out / ".metrics"
    shutil.rmtree(metrics, ignore_errors=True)
    metrics.mkdir(parents=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics)
    from leukofhir.serve.service import serve

    return serve(config, ready_file=args.ready_file)

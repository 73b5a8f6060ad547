"""Structured logs on stderr: JSON when stderr is not a terminal, console lines when it is.
Only the edges log, and never patient names, identifiers or result values: a log line
names a message by file, position, MSH-10, sending facility and outcome.

A JSON line holds the event's fields, then ``event``, ``level`` and ``timestamp`` (UTC,
ISO 8601), the fields structlog's ``JSONRenderer`` wrote before; it is written with orjson
by a logger of our own, because importing structlog takes longer than a whole one-message
``leukofhir replay`` (it imports rich and asyncio) and its lazy proxies cost about 0.15 ms
a line.  Console lines (a terminal) are structlog's ``ConsoleRenderer``, imported then."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson

__all__ = ["DEBUG", "ERROR", "INFO", "WARNING", "Logger", "configure", "get_logger"]

# the numbers of the logging module's levels (not imported: nothing here uses it)
DEBUG, INFO, WARNING, ERROR = 10, 20, 30, 40

Render = Callable[[str, dict[str, Any]], str]


class _Config:
    level = INFO
    render: Render | None = None  # None: chosen on the first line (configure(json=None))


_config = _Config()
_lock = threading.Lock()


def configure(*, json: bool | None = None, level: int = INFO) -> None:
    """JSON lines (``json``), console lines, or (None) JSON unless stderr is a terminal."""
    _config.level = level
    _config.render = None if json is None else _json_line if json else _console()


class Logger:
    """``log.info("message", file=..., outcome=...)``: an event and its fields, one line."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def debug(self, event: str, **fields: Any) -> None:
        _emit(DEBUG, "debug", event, fields)

    def info(self, event: str, **fields: Any) -> None:
        _emit(INFO, "info", event, fields)

    def warning(self, event: str, **fields: Any) -> None:
        _emit(WARNING, "warning", event, fields)

    def error(self, event: str, **fields: Any) -> None:
        _emit(ERROR, "error", event, fields)


def get_logger(name: str) -> Logger:
    return Logger(name)


def _emit(level: int, name: str, event: str, fields: dict[str, Any]) -> None:
    if level < _config.level:
        return
    fields["event"] = event
    fields["level"] = name
    fields["timestamp"] = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    render = _config.render
    if render is None:
        render = _config.render = _console() if sys.stderr.isatty() else _json_line
    line = render(name, fields)
    # one write per line: print() writes the line and its end apart, and another process
    # sharing stderr (the service's workers) could write between them
    with _lock:  # on the stderr of the moment (tests and daemons replace it)
        sys.stderr.write(line + "\n")
        sys.stderr.flush()


def _json_line(_: str, fields: dict[str, Any]) -> str:
    try:
        return orjson.dumps(fields, default=repr).decode()
    except TypeError:  # a key that is not a string, an integer beyond 64 bits
        import json

        return json.dumps(fields, default=repr)


def _console() -> Render:
    from structlog.dev import ConsoleRenderer

    renderer = ConsoleRenderer(colors=sys.stderr.isatty())

    def render(name: str, fields: dict[str, Any]) -> str:
        return str(renderer(None, name, fields))

    return render

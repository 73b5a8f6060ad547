"""The JSON log lines: one write per line (processes sharing stderr never join two lines),
the fields in structlog's JSONRenderer order."""

from __future__ import annotations

import io
import json

import pytest

from leukofhir.logs import configure, get_logger


class Writes(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def write(self, text: str) -> int:
        self.calls.append(text)
        return super().write(text)


def test_each_line_is_one_write_ending_in_a_newline(monkeypatch: pytest.MonkeyPatch) -> None:
    stderr = Writes()
    monkeypatch.setattr("sys.stderr", stderr)
    configure(json=True)
    try:
        log = get_logger("test")
        log.info("message processed", file="a.hl7", outcome="processed")
        log.warning("second", count=2)
    finally:
        configure()  # back to the default: JSON unless stderr is a terminal
    assert len(stderr.calls) == 2
    assert all(call.endswith("\n") and call.count("\n") == 1 for call in stderr.calls)
    first = json.loads(stderr.calls[0])
    assert list(first) == ["file", "outcome", "event", "level", "timestamp"]
    assert first["event"] == "message processed"
    assert first["level"] == "info"

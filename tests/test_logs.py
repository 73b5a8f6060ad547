"""The log lines: JSON (orjson) when stderr is not a terminal, console lines otherwise."""

from __future__ import annotations

import json

import pytest

from leukofhir.logs import configure, get_logger


@pytest.fixture(autouse=True)
def _auto_again() -> object:
    yield
    configure(json=None)


def test_a_json_line_holds_the_fields_then_event_level_and_timestamp(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure(json=True)
    get_logger("t").info("message", file="a.hl7", message=1, outcome="processed")
    line = capsys.readouterr().err.strip()
    parsed = json.loads(line)
    assert list(parsed) == ["file", "message", "outcome", "event", "level", "timestamp"]
    assert parsed["event"] == "message"
    assert parsed["level"] == "info"
    assert parsed["timestamp"].endswith("Z")


def test_a_console_line_is_timestamp_level_event_then_sorted_pairs(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure(json=False)
    get_logger("t").warning("message", outcome="rejected", file="a b.hl7", issues=2)
    line = capsys.readouterr().err.strip()
    stamp, rest = line.split(" ", 1)
    assert stamp.endswith("Z")
    assert (
        rest
        == "[warning  ] message                        file='a b.hl7' issues=2 outcome=rejected"
    )


def test_levels_below_the_configured_one_are_dropped(capsys: pytest.CaptureFixture[str]) -> None:
    configure(json=True, level=30)
    log = get_logger("t")
    log.info("quiet")
    log.error("loud")
    lines = capsys.readouterr().err.strip().splitlines()
    assert [json.loads(line)["event"] for line in lines] == ["loud"]

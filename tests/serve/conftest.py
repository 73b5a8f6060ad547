"""Logs of every service test go to the stderr pytest is capturing for that test."""

from __future__ import annotations

import pytest

from leukofhir.logs import configure


@pytest.fixture(autouse=True)
def _fresh_logging() -> None:
    configure(json=True)


@pytest.fixture
def logs(capsys: pytest.CaptureFixture[str]) -> pytest.CaptureFixture[str]:
    """``capsys`` with the logs written into it (structlog holds the stderr it was given)."""
    configure(json=True)
    return capsys

"""Logs of every batch test go to the stderr pytest is capturing for that test."""

from __future__ import annotations

import pytest

from leukofhir.logs import configure


@pytest.fixture(autouse=True)
def _fresh_logging() -> None:
    configure(json=True)

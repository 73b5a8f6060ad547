"""A fhir-server shared by the tests that need a plain one (emptied before each), the
documents they send, and what the server holds after those documents went in by the most
plain route there is: POSTed one by one with httpx, no leukofhir code (the oracle)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import httpx
import pytest

from leukofhir.logs import configure
from tests.delivery.helpers import DOCS, FHIR_JSON
from tests.fhirserver import FhirServer, canonical, running_server


@pytest.fixture(autouse=True)
def _json_logs() -> None:
    configure(json=True)


@pytest.fixture(scope="session")
def plain_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FhirServer]:
    with running_server(tmp_path_factory.mktemp("fhir-plain")) as server:
        yield server


@pytest.fixture
def fhir(plain_server: FhirServer) -> FhirServer:
    plain_server.reset()
    return plain_server


Oracle = Callable[[Sequence[bytes]], list[str]]


@pytest.fixture(scope="session")
def oracle(plain_server: FhirServer) -> Oracle:
    """``oracle(docs)``: what the server holds after ``docs`` were POSTed one by one by
    plain httpx.  It empties the shared server: call it before using ``fhir``."""
    cache: dict[tuple[bytes, ...], list[str]] = {}

    def state_of(docs: Sequence[bytes]) -> list[str]:
        if tuple(docs) not in cache:
            plain_server.reset()
            with httpx.Client(timeout=30) as client:
                for data in docs:
                    response = client.post(plain_server.base, content=data, headers=FHIR_JSON)
                    assert response.status_code == 200, response.text[:500]
            cache[tuple(docs)] = canonical(plain_server.dump())
            plain_server.reset()
        return cache[tuple(docs)]

    return state_of


@pytest.fixture(scope="session")
def clean_state(oracle: Oracle) -> list[str]:
    return oracle(DOCS)

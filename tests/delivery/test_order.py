"""Per-patient order under concurrency 4: a patient's next document is sent only after the
server confirmed the one before, while different patients overlap.  Checked on the wire
(a recording transport in front of the real one, which also turns every fifth request into
a 503 without sending it, so that retries interleave) and on the server (each patient's
Observation, conditionally updated by every report, ends with the last report's value,
after exactly as many versions as reports)."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson

from leukofhir.delivery import Document, SqliteOutbox
from tests.delivery.helpers import deliver
from tests.fhirserver import FhirServer

PATIENTS = 5
REPORTS = 6
NAMESPACE = uuid.UUID("9f1c1a52-5f1e-4a8e-9d8f-3c1f4e2b7a10")


def report(patient: str, number: int) -> bytes:
    """A transaction in the lifecycle's style: conditional create of the Patient,
    conditional update of the WBC Observation and of the report."""

    def url(name: str) -> str:
        return f"urn:uuid:{uuid.uuid5(NAMESPACE, name)}"

    code: dict[str, Any] = {"coding": [{"system": "http://loinc.org", "code": "6690-2"}]}
    entries = [
        {
            "fullUrl": url(patient),
            "resource": {
                "resourceType": "Patient",
                "identifier": [{"system": "urn:test:mrn", "value": patient}],
            },
            "request": {
                "method": "POST",
                "url": "Patient",
                "ifNoneExist": f"identifier=urn:test:mrn|{patient}",
            },
        },
        {
            "fullUrl": url(f"{patient}/{number}/wbc"),
            "resource": {
                "resourceType": "Observation",
                "identifier": [{"system": "urn:test:wbc", "value": patient}],
                "status": "final",
                "code": code,
                "subject": {"reference": url(patient)},
                "valueQuantity": {"value": number, "system": "http://unitsofmeasure.org"},
            },
            "request": {"method": "PUT", "url": f"Observation?identifier=urn:test:wbc|{patient}"},
        },
        {
            "fullUrl": url(f"{patient}/{number}/report"),
            "resource": {
                "resourceType": "DiagnosticReport",
                "identifier": [{"system": "urn:test:report", "value": f"{patient}/{number}"}],
                "status": "final",
                "code": code,
                "subject": {"reference": url(patient)},
                "result": [{"reference": url(f"{patient}/{number}/wbc")}],
            },
            "request": {
                "method": "PUT",
                "url": f"DiagnosticReport?identifier=urn:test:report|{patient}/{number}",
            },
        },
    ]
    return orjson.dumps({"resourceType": "Bundle", "type": "transaction", "entry": entries})


@dataclass
class Exchange:
    patient: str
    number: int
    started: float
    ended: float = 0.0
    status: int = 0


class Wire(httpx.AsyncBaseTransport):
    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.exchanges: list[Exchange] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        entries = orjson.loads(request.content)["entry"]
        patient, number = entries[2]["resource"]["identifier"][0]["value"].split("/")
        exchange = Exchange(patient, int(number), time.perf_counter())
        self.exchanges.append(exchange)
        if len(self.exchanges) % 5 == 0:
            response = httpx.Response(503, headers={"Retry-After": "0"})
        else:
            response = await self.inner.handle_async_request(request)
            await response.aread()
        exchange.ended, exchange.status = time.perf_counter(), response.status_code
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


def test_one_patient_in_order_patients_in_parallel(fhir: FhirServer, tmp_path: Path) -> None:
    patients = [f"P{p}" for p in range(PATIENTS)]
    outbox = SqliteOutbox.open(tmp_path / "outbox.sqlite")
    outbox.enqueue(
        [
            Document(f"{patient}/{n}", patient, n * PATIENTS + p, report(patient, n))
            for n in range(1, REPORTS + 1)
            for p, patient in enumerate(patients)
        ],
        time.time(),
    )
    wire = Wire()
    summary = deliver(outbox, fhir.base, concurrency=4, transport=wire)
    assert summary.delivered == PATIENTS * REPORTS
    assert summary.retried >= 5  # the injected 503s

    for patient in patients:
        mine = [e for e in wire.exchanges if e.patient == patient]
        for n in range(1, REPORTS):
            done = max(e.ended for e in mine if e.number == n and e.status == 200)
            assert all(e.started > done for e in mine if e.number > n), (patient, n)
    overlap = max(
        sum(1 for o in wire.exchanges if o.started <= e.started < o.ended) for e in wire.exchanges
    )
    assert overlap >= 2  # different patients were in flight together

    for patient in patients:
        found = httpx.get(
            f"{fhir.base}/Observation", params={"identifier": f"urn:test:wbc|{patient}"}
        ).json()["entry"]
        (observation,) = (entry["resource"] for entry in found)
        assert observation["valueQuantity"]["value"] == REPORTS
        assert observation["meta"]["versionId"] == str(REPORTS)

"""The HTTP API in process (Starlette app over the real engine, one process), driven by
httpx through its ASGI transport: ACKs, FHIR answers, re-sends, limits, media types,
authentication, metrics and the OpenAPI document."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.routing import Route

from leukofhir.context import Settings
from leukofhir.serve.http_app import HttpSettings, build_app
from leukofhir.serve.intake import Intake
from leukofhir.serve.journal import Journal
from leukofhir.serve.metrics import Metrics
from leukofhir.serve.openapi import openapi_document
from leukofhir.serve.sink import FolderSink
from tests.serve.helpers import Poisoned, field_of, outputs, sample

ER7 = "x-application/hl7-v2+er7"
FHIR = "application/fhir+json"
HL7 = {"content-type": ER7}
AS_FHIR = {"content-type": ER7, "accept": FHIR}
TOKEN = "s3cret-t0ken"

M02 = sample("02-leukopenia-g1-wbc-3p0.hl7")  # processed, leukopenia G1
M04 = sample("04-leukopenia-g2-g3-edges.hl7")  # processed, two reports
M17 = sample("17-chemistry-no-cbc.hl7")  # skipped
M18 = sample("18-malformed-msh.hl7")  # rejected: MSH-2
M19 = sample("19-wrong-message-type-adt.hl7")  # rejected: ADT^A01 (AR)
M21 = sample("21-unknown-wbc-unit.hl7")  # processed with a warning


@dataclass
class Api:
    client: httpx.AsyncClient
    app: Starlette
    intake: Intake
    out: Path

    async def hl7(self, body: bytes, **headers: str) -> httpx.Response:
        return await self.client.post("/hl7v2", content=body, headers={**HL7, **headers})

    async def fhir(self, body: bytes, media_type: str = FHIR) -> httpx.Response:
        return await self.client.post("/fhir", content=body, headers={"content-type": media_type})


@contextlib.asynccontextmanager
async def serving(
    tmp_path: Path, *, max_body: int = 1 << 20, token: str = "", stopping: bool = False
) -> AsyncIterator[Api]:
    out = tmp_path / "out"
    metrics = Metrics()
    intake = Intake(
        Journal(tmp_path / "journal", durable=False),
        FolderSink(out),
        Settings(),
        metrics=metrics,
    )
    intake.recover()
    app = build_app(
        intake,
        HttpSettings(max_body=max_body, token=token),
        metrics,
        stopping=lambda: stopping,
    )
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://test", timeout=10.0
        ) as client:
            yield Api(client, app, intake, out)
    finally:
        await intake.close(5.0)


def run(tmp_path: Path, scenario: Callable[[Api], Awaitable[None]], **settings: Any) -> None:
    async def main() -> None:
        async with serving(tmp_path, **settings) as api:
            await scenario(api)

    asyncio.run(asyncio.wait_for(main(), 30))


def msa(ack: bytes) -> tuple[str, str]:
    return field_of(ack, "MSA", 1), field_of(ack, "MSA", 2)


def errs(ack: bytes) -> list[list[str]]:
    return [line.decode().split("|") for line in ack.split(b"\r") if line.startswith(b"ERR|")]


def control_id(message: bytes) -> str:
    return field_of(message.removeprefix(b"\xef\xbb\xbf"), "MSH", 10)


def snapshot(out: Path) -> dict[str, tuple[bytes, int]]:
    return {
        name: ((out / name).read_bytes(), (out / name).stat().st_mtime_ns) for name in outputs(out)
    }


def entries(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    return [entry["resource"] for entry in bundle.get("entry", [])]


# -- POST /hl7v2: the ACK ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "folder"),
    [
        ("01-normal-cbc-5-part-diff.hl7", "processed"),
        ("02-leukopenia-g1-wbc-3p0.hl7", "processed"),
        ("16-lf-line-endings.hl7", "processed"),
        ("28-crlf-line-endings.hl7", "processed"),
        ("34-utf8-bom.hl7", "processed"),
        ("08-eosinophilia-basophilia.hl7", "processed"),  # UTF-8 name, v2.5
        ("17-chemistry-no-cbc.hl7", "skipped"),
    ],
)
def test_hl7v2_answers_200_and_an_aa_ack_for_the_message(
    tmp_path: Path, name: str, folder: str
) -> None:
    message = sample(name)
    expected_id = control_id(message)
    assert expected_id  # the sample has an MSH-10

    async def scenario(api: Api) -> None:
        response = await api.hl7(message)
        assert response.status_code == 200
        assert response.headers["content-type"].split(";")[0] == ER7
        ack = response.content
        assert ack.startswith(b"MSH|^~\\&|")
        assert msa(ack) == ("AA", expected_id)
        assert field_of(ack, "MSH", 9).startswith("ACK^")
        assert field_of(ack, "MSH", 10) not in ("", expected_id)  # a new control id
        clean = message.removeprefix(b"\xef\xbb\xbf")
        # sender and receiver swapped, version copied
        assert field_of(ack, "MSH", 5) == field_of(clean, "MSH", 3)
        assert field_of(ack, "MSH", 6) == field_of(clean, "MSH", 4)
        assert field_of(ack, "MSH", 3) == field_of(clean, "MSH", 5)
        assert field_of(ack, "MSH", 12) == field_of(clean, "MSH", 12)
        written = outputs(api.out)
        # AA only once the outputs are on disk
        assert written
        assert all(n.startswith(f"{folder}/") for n in written), written
        assert any(f"/{expected_id}_" in n for n in written), written
        if folder == "processed":
            assert any(n.endswith(".r1.bundle.json") for n in written)

    run(tmp_path, scenario)


def test_a_warning_is_an_aa_with_a_w_err_segment(tmp_path: Path) -> None:
    async def scenario(api: Api) -> None:
        response = await api.hl7(M21)
        assert response.status_code == 200
        assert msa(response.content) == ("AA", control_id(M21))
        (err,) = errs(response.content)
        assert err[2] == "OBX^1^6^1"
        assert err[4] == "W"
        assert "bogus/L" in err[8]

    run(tmp_path, scenario)


@pytest.mark.parametrize(
    ("message", "code", "location", "table_code"),
    [
        (M19, "AR", "MSH^1^9^1", "200"),  # unsupported message type
        (M18, "AE", "MSH^1^2^1", "102"),  # MSH-2 unreadable
        (
            b"MSH|" + M19.split(b"MSH|")[1].replace(b"ADT^A01^ADT_A01", b""),
            "AE",
            "MSH^1^9^1",
            "101",
        ),
    ],
    ids=["adt-AR", "malformed-msh-AE", "empty-msh9-AE"],
)
def test_a_rejected_message_is_200_with_an_ae_or_ar_ack_and_err_segments(
    tmp_path: Path, message: bytes, code: str, location: str, table_code: str
) -> None:
    async def scenario(api: Api) -> None:
        response = await api.hl7(message)
        assert response.status_code == 200  # relays drop non-2xx answers
        assert response.headers["content-type"].split(";")[0] == ER7
        ack = response.content
        assert msa(ack)[0] == code
        if message is not M18:  # MSH-10 readable
            assert msa(ack)[1] == control_id(message)
        found = errs(ack)
        assert found, ack
        err = found[0]
        assert err[2] == location
        assert err[3].split("^")[0] == table_code
        assert err[3].split("^")[2] == "HL70357"
        assert err[4] == "E"
        assert err[8]  # a readable text
        written = outputs(api.out)
        assert written
        assert all(n.startswith("rejected/") for n in written), written
        kept = [n for n in written if n.endswith(".hl7")]
        assert len(kept) == 1
        assert (api.out / kept[0]).read_bytes() == message  # kept byte for byte

    run(tmp_path, scenario)


def test_other_hl7_media_types_are_accepted(tmp_path: Path) -> None:
    async def scenario(api: Api) -> None:
        for media_type in (
            "application/hl7-v2",
            "text/plain; charset=utf-8",
            "X-Application/HL7-V2+ER7",
        ):
            response = await api.hl7(M02, **{"content-type": media_type})
            assert response.status_code == 200, media_type
            assert msa(response.content) == ("AA", control_id(M02))

    run(tmp_path, scenario)


# -- POST /hl7v2 with Accept: application/fhir+json -----------------------------------------


def test_accept_fhir_gives_the_bundles_that_were_written(tmp_path: Path) -> None:
    async def scenario(api: Api) -> None:
        for message, reports in ((M02, 1), (M04, 2)):
            response = await api.hl7(message, accept=FHIR)
            assert response.status_code == 200
            assert response.headers["content-type"].split(";")[0] == FHIR
            bundle = response.json()
            assert bundle["resourceType"] == "Bundle"
            assert bundle["type"] == "collection"
            resources = entries(bundle)
            bundles = [r for r in resources if r["resourceType"] == "Bundle"]
            assert len(bundles) == reports
            assert all(b["type"] == "transaction" for b in bundles)
            # the answer is what was written
            cid = control_id(message)
            written = {
                n: json.loads((api.out / n).read_bytes())
                for n in outputs(api.out)
                if f"/{cid}_" in n and n.endswith(".bundle.json")
            }
            assert len(written) == reports
            assert sorted(json.dumps(b, sort_keys=True) for b in bundles) == sorted(
                json.dumps(b, sort_keys=True) for b in written.values()
            )

    run(tmp_path, scenario)


def test_accept_fhir_on_a_rejected_message_is_422_operation_outcome(tmp_path: Path) -> None:
    async def scenario(api: Api) -> None:
        response = await api.hl7(M19, accept=FHIR)
        assert response.status_code == 422
        assert response.headers["content-type"].split(";")[0] == FHIR
        outcome = response.json()
        assert outcome["resourceType"] == "OperationOutcome"
        (issue,) = outcome["issue"]
        assert issue["severity"] == "error"
        assert issue["code"] == "not-supported"
        assert issue["location"] == ["MSH[1]-9"]

    run(tmp_path, scenario)


def test_accept_fhir_on_a_resent_message_gives_the_same_bundles_and_writes_nothing(
    tmp_path: Path,
) -> None:
    async def scenario(api: Api) -> None:
        first = await api.hl7(M02, accept=FHIR)
        before = snapshot(api.out)
        again = await api.hl7(M02, accept=FHIR)
        assert again.status_code == first.status_code == 200
        assert [json.dumps(r, sort_keys=True) for r in entries(again.json())] == [
            json.dumps(r, sort_keys=True) for r in entries(first.json())
        ]
        assert snapshot(api.out) == before
        ack = await api.hl7(M02)  # and the plain re-send still gets an ACK
        assert msa(ack.content) == ("AA", control_id(M02))

    run(tmp_path, scenario)


# -- re-sends ------------------------------------------------------------------------------


def test_a_resent_message_gets_the_same_ack_bytes_and_no_new_output(tmp_path: Path) -> None:
    variants = [
        M02,
        M02.rstrip(b"\r"),  # mllp_send strips the final \r
        M02.replace(b"\r", b"\r\n"),  # a Windows client
    ]

    async def scenario(api: Api) -> None:
        first = await api.hl7(M02)
        assert msa(first.content) == ("AA", control_id(M02))
        before = snapshot(api.out)
        assert before
        for variant in variants:
            again = await api.hl7(variant)
            assert again.status_code == 200
            assert again.content == first.content
            assert snapshot(api.out) == before
        rejected = await api.hl7(M19)
        before = snapshot(api.out)
        assert (await api.hl7(M19)).content == rejected.content
        assert snapshot(api.out) == before

    run(tmp_path, scenario)


def test_the_same_control_id_with_other_content_is_processed_again(tmp_path: Path) -> None:
    changed = M02.replace(b"|3.0|K/uL|", b"|2.8|K/uL|")
    assert changed != M02

    async def scenario(api: Api) -> None:
        first = await api.hl7(M02)
        before = set(outputs(api.out))
        second = await api.hl7(changed)
        assert msa(second.content) == ("AA", control_id(M02))
        assert field_of(second.content, "MSH", 10) != field_of(first.content, "MSH", 10)
        assert set(outputs(api.out)) > before

    run(tmp_path, scenario)


# -- POST /fhir ----------------------------------------------------------------------------


def test_fhir_bundle_gives_200_and_the_transaction_bundle(tmp_path: Path) -> None:
    async def scenario(api: Api) -> None:
        response = await api.fhir(sample("f03-transaction-urn-uuid-neutropenia.json"))
        assert response.status_code == 200
        assert response.headers["content-type"].split(";")[0] == FHIR
        bundle = response.json()
        assert bundle["resourceType"] == "Bundle"
        assert bundle["type"] == "transaction"
        kinds = {r["resourceType"] for r in entries(bundle)}
        assert {"DiagnosticReport", "Flag", "Provenance"} <= kinds
        assert any(n.startswith("processed/") for n in outputs(api.out))

    run(tmp_path, scenario)


def test_plain_json_media_type_is_accepted_too(tmp_path: Path) -> None:
    async def scenario(api: Api) -> None:
        response = await api.fhir(
            sample("f01-single-observation-wbc-leukopenic.json"), "application/json"
        )
        assert response.status_code == 200
        # f01's Patient has no birthDate: the transaction Bundle comes with an
        # OperationOutcome (evaluated with the adult limits, with a warning), in a collection
        bundle = response.json()
        assert bundle["type"] == "collection"
        inner = entries(bundle)
        assert [r["type"] for r in inner if r["resourceType"] == "Bundle"] == ["transaction"]
        (outcome,) = [r for r in inner if r["resourceType"] == "OperationOutcome"]
        assert "age is not known" in outcome["issue"][0]["details"]["text"]

    run(tmp_path, scenario)


def test_fhir_ndjson_gives_200_and_a_collection_of_bundles(tmp_path: Path) -> None:
    async def scenario(api: Api) -> None:
        response = await api.fhir(sample("f07-bulk-export.ndjson"), "application/fhir+ndjson")
        assert response.status_code == 200
        bundle = response.json()
        assert bundle["resourceType"] == "Bundle"
        assert bundle["type"] == "collection"
        inner = [r for r in entries(bundle) if r["resourceType"] == "Bundle"]
        assert len(inner) == 2  # two reports in the export
        assert all(b["type"] == "transaction" for b in inner)

    run(tmp_path, scenario)


def test_fhir_with_one_bad_report_beside_a_good_one_is_200(tmp_path: Path) -> None:
    async def scenario(api: Api) -> None:
        response = await api.fhir(sample("f09-bad-value-type-and-good-report.json"))
        assert response.status_code == 200
        kinds = sorted(r["resourceType"] for r in entries(response.json()))
        # the rejected report's outcome, and the good one's warning (no birthDate: adult limits)
        assert kinds == ["Bundle", "OperationOutcome", "OperationOutcome"]

    run(tmp_path, scenario)


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"{not json", "structure"),
        (b'{"resourceType": "Patient", "id": "p1"}', "not-supported"),
        (
            b'{"resourceType": "Observation", "status": "final", "code": {"coding": [{"system":'
            b' "http://loinc.org", "code": "6690-2"}]}, "valueQuantity": {"value": "2.1",'
            b' "unit": "10*9/L", "system": "http://unitsofmeasure.org", "code": "10*9/L"}}',
            "value",
        ),
    ],
    ids=["not-json", "not-a-lab-result", "string-decimal"],
)
def test_an_all_bad_fhir_body_is_422_operation_outcome(
    tmp_path: Path, body: bytes, code: str
) -> None:
    async def scenario(api: Api) -> None:
        response = await api.fhir(body)
        assert response.status_code == 422
        assert response.headers["content-type"].split(";")[0] == FHIR
        outcome = response.json()
        assert outcome["resourceType"] == "OperationOutcome"
        assert {i["severity"] for i in outcome["issue"]} == {"error"}
        assert code in {i["code"] for i in outcome["issue"]}
        assert not any(n.startswith("processed/") for n in outputs(api.out))

    run(tmp_path, scenario)


def test_a_resent_fhir_body_gets_the_same_answer_and_no_new_output(tmp_path: Path) -> None:
    body = sample("f01-single-observation-wbc-leukopenic.json")

    async def scenario(api: Api) -> None:
        first = await api.fhir(body)
        before = snapshot(api.out)
        again = await api.fhir(body)
        assert again.status_code == first.status_code == 200
        assert again.content == first.content
        assert snapshot(api.out) == before

    run(tmp_path, scenario)


# -- faults of ours -----------------------------------------------------------------------------

FHIR_POISON = json.dumps(
    {**json.loads(sample("f01-single-observation-wbc-leukopenic.json")), "id": "POISON"}
).encode()
HL7_POISON = M02.replace(control_id(M02).encode(), b"POISON-1")
ISSUE9_BODY = (  # issue 9: the core raised KeyError('R4.FooType') on it
    b'{"resourceType": "Observation", "status": "final", "code": {"coding": [{"system":'
    b' "http://loinc.org", "code": "6690-2"}]}, "valueQuantity": {"value": 3.1, "unit":'
    b' "10*3/uL", "system": "http://unitsofmeasure.org", "code": "10*3/uL"},'
    b' "contained": [{"resourceType": "Foo"}]}'
)


def test_a_fault_on_fhir_is_500_operation_outcome_exception_and_kept_as_failed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    Poisoned(monkeypatch)

    async def scenario(api: Api) -> None:
        first = await api.fhir(FHIR_POISON)
        again = await api.fhir(FHIR_POISON)
        good = await api.fhir(sample("f01-single-observation-wbc-leukopenic.json"))
        assert first.status_code == 500
        assert "retry-after" not in first.headers  # sending it again will not help
        operation_outcome(first, "exception")
        [issue] = first.json()["issue"]
        assert issue["details"]["coding"][0]["code"] == "207"
        assert "(KeyError)" in issue["details"]["text"]
        assert (again.status_code, again.content) == (500, first.content)
        assert good.status_code == 200
        [row] = api.intake.journal.failed()
        assert (row.format, row.channel) == ("fhir", "http")
        assert row.reason.startswith("KeyError at ")

    run(tmp_path, scenario)


def test_a_fault_on_hl7v2_is_an_ar_ack_and_500_when_fhir_is_preferred(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    Poisoned(monkeypatch)

    async def scenario(api: Api) -> None:
        ack = await api.hl7(HL7_POISON)
        as_fhir = await api.client.post("/hl7v2", content=HL7_POISON, headers=AS_FHIR)
        assert ack.status_code == 200  # as every ACK: the ACK carries the outcome
        assert msa(ack.content) == ("AR", "POISON-1")
        assert errs(ack.content)[0][3].startswith("207^")
        assert as_fhir.status_code == 500
        operation_outcome(as_fhir, "exception")
        assert api.intake.journal.counts() == {"failed": 1}

    run(tmp_path, scenario)


def test_the_issue_9_body_is_answered_and_the_next_body_too(tmp_path: Path) -> None:
    """The real poison, without injection: answered (500 while the core raised on it, 422
    once the core rejects it), never left hanging, and the next body is processed."""

    async def scenario(api: Api) -> None:
        first = await api.fhir(ISSUE9_BODY)
        again = await api.fhir(ISSUE9_BODY)
        good = await api.fhir(sample("f01-single-observation-wbc-leukopenic.json"))
        assert first.status_code in (422, 500), first.text
        assert first.json()["resourceType"] == "OperationOutcome"
        assert (again.status_code, again.content) == (first.status_code, first.content)
        assert good.status_code == 200
        assert api.intake.journal.counts()["received"] == 0

    run(tmp_path, scenario)


def test_an_unexpected_exception_in_a_route_is_500_without_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, logs: pytest.CaptureFixture[str]
) -> None:
    async def scenario(api: Api) -> None:
        async def broken(*_: Any, **__: Any) -> Any:
            raise RuntimeError("a bug of ours")

        monkeypatch.setattr(api.intake, "submit", broken)
        response = await api.fhir(sample("f01-single-observation-wbc-leukopenic.json"))
        assert response.status_code == 500
        operation_outcome(response, "exception")

    run(tmp_path, scenario)
    err = logs.readouterr().err
    assert '"event":"request_failed"' in err
    assert "Traceback" not in err
    assert "a bug of ours" not in err


# -- refusals before the engine ----------------------------------------------------------------


def operation_outcome(response: httpx.Response, code: str) -> None:
    assert response.headers["content-type"].split(";")[0] == FHIR
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert [i["code"] for i in outcome["issue"]] == [code]


def test_a_wrong_media_type_is_415(tmp_path: Path) -> None:
    async def scenario(api: Api) -> None:
        cases = [
            ("/fhir", sample("f01-single-observation-wbc-leukopenic.json"), "application/xml"),
            ("/fhir", sample("f01-single-observation-wbc-leukopenic.json"), ""),
            ("/fhir", M02, ER7),
            ("/hl7v2", M02, FHIR),
            ("/hl7v2", M02, "application/octet-stream"),
        ]
        for path, body, media_type in cases:
            headers = {"content-type": media_type} if media_type else {}
            response = await api.client.post(path, content=body, headers=headers)
            assert response.status_code == 415, (path, media_type)
            operation_outcome(response, "not-supported")
        assert outputs(api.out) == []
        assert api.intake.journal.counts() == {}

    run(tmp_path, scenario)


def test_a_body_over_the_limit_is_413_by_content_length(tmp_path: Path) -> None:
    limit = 4096
    assert len(M02) < limit < len(M21)
    at_limit = M02 + b"\r" * (limit - len(M02))

    async def scenario(api: Api) -> None:
        over = await api.hl7(at_limit + b"\r")
        assert over.status_code == 413
        response = await api.hl7(M21)
        assert response.status_code == 413
        operation_outcome(response, "too-long")
        big_fhir = sample("f03-transaction-urn-uuid-neutropenia.json")
        assert len(big_fhir) > limit
        response = await api.fhir(big_fhir)
        assert response.status_code == 413
        operation_outcome(response, "too-long")
        assert outputs(api.out) == []
        assert api.intake.journal.counts() == {}
        exact = await api.hl7(at_limit)  # exactly the limit: accepted
        assert exact.status_code == 200
        assert msa(exact.content) == ("AA", control_id(M02))

    run(tmp_path, scenario, max_body=limit)


def test_a_body_over_the_limit_is_413_while_streaming_without_content_length(
    tmp_path: Path,
) -> None:
    async def chunks(data: bytes) -> AsyncIterator[bytes]:
        for start in range(0, len(data), 512):
            yield data[start : start + 512]

    async def scenario(api: Api) -> None:
        for path, body, media_type in (
            ("/hl7v2", M21, ER7),
            ("/fhir", sample("f03-transaction-urn-uuid-neutropenia.json"), FHIR),
        ):
            request = api.client.build_request(
                "POST", path, content=chunks(body), headers={"content-type": media_type}
            )
            assert "content-length" not in request.headers
            assert request.headers["transfer-encoding"] == "chunked"
            response = await api.client.send(request)
            assert response.status_code == 413, path
            operation_outcome(response, "too-long")
        assert outputs(api.out) == []
        assert api.intake.journal.counts() == {}
        # a streamed body under the limit is read whole
        request = api.client.build_request("POST", "/hl7v2", content=chunks(M02), headers=HL7)
        response = await api.client.send(request)
        assert response.status_code == 200
        assert msa(response.content) == ("AA", control_id(M02))

    run(tmp_path, scenario, max_body=4096)


def test_an_empty_body_is_400(tmp_path: Path) -> None:
    async def scenario(api: Api) -> None:
        for path, media_type in (("/hl7v2", ER7), ("/fhir", FHIR)):
            for body in (b"", b"\r\n  \r"):
                response = await api.client.post(
                    path, content=body, headers={"content-type": media_type}
                )
                assert response.status_code == 400, (path, body)
                operation_outcome(response, "required")
        assert api.intake.journal.counts() == {}

    run(tmp_path, scenario)


def test_wrong_method_and_unknown_path(tmp_path: Path) -> None:
    async def scenario(api: Api) -> None:
        assert (await api.client.get("/hl7v2")).status_code == 405
        assert (await api.client.get("/nowhere")).status_code == 404

    run(tmp_path, scenario)


# -- bearer token ------------------------------------------------------------------------------


def test_bearer_token_is_required_when_configured(tmp_path: Path) -> None:
    async def scenario(api: Api) -> None:
        for authorization in (None, "Bearer wrong", f"Basic {TOKEN}", "Bearer", f"Bearer {TOKEN}x"):
            headers = {"authorization": authorization} if authorization else {}
            for path, body, media_type in (
                ("/hl7v2", M02, ER7),
                ("/fhir", sample("f01-single-observation-wbc-leukopenic.json"), FHIR),
            ):
                response = await api.client.post(
                    path, content=body, headers={"content-type": media_type, **headers}
                )
                assert response.status_code == 401, (path, authorization)
                assert response.headers["www-authenticate"].split()[0].lower() == "bearer"
                operation_outcome(response, "login")
            response = await api.client.get("/metrics", headers=headers)
            assert response.status_code == 401
        assert outputs(api.out) == []  # nothing was journaled or processed
        assert api.intake.journal.counts() == {}

        right = {"authorization": f"Bearer {TOKEN}"}
        response = await api.hl7(M02, **right)
        assert response.status_code == 200
        assert msa(response.content) == ("AA", control_id(M02))
        response = await api.hl7(M02, authorization=f"bearer {TOKEN}")  # scheme: any case
        assert response.status_code == 200
        response = await api.client.post(
            "/fhir",
            content=sample("f01-single-observation-wbc-leukopenic.json"),
            headers={"content-type": FHIR, **right},
        )
        assert response.status_code == 200
        assert (await api.client.get("/metrics", headers=right)).status_code == 200
        health = await api.client.get("/healthz")  # never authenticated
        assert health.status_code == 200
        assert health.json()["status"] == "ok"

    run(tmp_path, scenario, token=TOKEN)


def test_without_a_token_configured_no_authorization_is_needed(tmp_path: Path) -> None:
    async def scenario(api: Api) -> None:
        assert (await api.hl7(M02)).status_code == 200
        assert (await api.client.get("/metrics")).status_code == 200
        health = await api.client.get("/healthz")
        assert health.status_code == 200
        assert health.json() == {"status": "ok", "in_progress": 0}

    run(tmp_path, scenario)


def test_healthz_is_503_while_stopping(tmp_path: Path) -> None:
    async def scenario(api: Api) -> None:
        health = await api.client.get("/healthz")
        assert health.status_code == 503
        assert health.json()["status"] == "stopping"

    run(tmp_path, scenario, stopping=True, token=TOKEN)  # and still without a token


# -- /metrics ----------------------------------------------------------------------------------


def samples_of(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_metrics_count_messages_by_outcome_findings_and_latency(tmp_path: Path) -> None:
    async def scenario(api: Api) -> None:
        await api.hl7(M02)  # processed, AA, leukopenia G1
        await api.hl7(M17)  # skipped, AA
        await api.hl7(M19)  # rejected, AR
        await api.hl7(M02)  # duplicate
        await api.fhir(sample("f01-single-observation-wbc-leukopenic.json"))  # processed, G1
        await api.hl7(b"", **HL7)  # 400: never reaches the engine
        response = await api.client.get("/metrics")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        text = response.text
        assert "leukofhir_messages_total" in text
        values = samples_of(text)

        def value(name: str, **labels: str) -> float:
            return values.get((name, tuple(sorted(labels.items()))), 0.0)

        messages = {k: v for k, v in values.items() if k[0] == "leukofhir_messages_total"}
        assert value("leukofhir_messages_total", channel="http", outcome="processed") == 2
        assert value("leukofhir_messages_total", channel="http", outcome="skipped") == 1
        assert value("leukofhir_messages_total", channel="http", outcome="rejected") == 1
        assert value("leukofhir_messages_total", channel="http", outcome="duplicate") == 1
        assert sum(messages.values()) == 5
        assert value("leukofhir_acks_total", code="AA") == 3
        assert value("leukofhir_acks_total", code="AR") == 1
        assert value("leukofhir_findings_total", finding="leukopenia G1") == 2
        # the latency histogram: one observation per answered message
        assert value("leukofhir_reply_seconds_count", channel="http") == 5
        assert value("leukofhir_reply_seconds_bucket", channel="http", le="+Inf") == 5
        assert 0 < value("leukofhir_reply_seconds_sum", channel="http") < 30
        buckets = sorted(
            (float(dict(k[1])["le"]), v)
            for k, v in values.items()
            if k[0] == "leukofhir_reply_seconds_bucket"
        )
        assert len(buckets) >= 5
        counts = [v for _, v in buckets]
        assert counts == sorted(counts)  # cumulative
        assert value("leukofhir_reply_seconds_bucket", channel="http", le="5.0") == 5

    run(tmp_path, scenario)


# -- OpenAPI -----------------------------------------------------------------------------------


def operations(document: dict[str, Any]) -> set[tuple[str, str]]:
    return {(path, method.upper()) for path, item in document["paths"].items() for method in item}


def app_routes(app: Starlette) -> set[tuple[str, str]]:
    found = set()
    for route in app.routes:
        assert isinstance(route, Route)
        assert route.methods is not None
        found |= {(route.path, m) for m in route.methods if m != "HEAD"}
    return found


def refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return own + [r for value in node.values() for r in refs(value)]
    if isinstance(node, list):
        return [r for value in node for r in refs(value)]
    return []


def test_openapi_document_is_openapi_3_1_and_names_exactly_the_app_routes(
    tmp_path: Path,
) -> None:
    async def scenario(api: Api) -> None:
        response = await api.client.get("/openapi.json")
        assert response.status_code == 200
        assert response.headers["content-type"].split(";")[0] == "application/json"
        document = response.json()
        assert document == json.loads(json.dumps(openapi_document()))
        assert document["openapi"].startswith("3.1.")
        assert document["info"]["title"]
        assert document["info"]["version"]
        assert operations(document) == app_routes(api.app)
        for path, item in document["paths"].items():
            assert path.startswith("/")
            for method, operation in item.items():
                assert method in {"get", "post", "put", "delete", "patch", "head", "options"}
                assert operation["responses"], (path, method)
                for status, answer in operation["responses"].items():
                    assert len(status) == 3
                    assert status.isdigit()
                    assert answer["description"]
                if "requestBody" in operation:
                    assert operation["requestBody"]["content"]
        for ref in refs(document):
            assert ref.startswith("#/")
            node: Any = document
            for part in ref[2:].split("/"):
                node = node[part]  # resolves (KeyError otherwise)

    run(tmp_path, scenario)


def test_openapi_documents_every_status_the_api_answers(tmp_path: Path) -> None:
    """Each status actually produced below must be listed for its operation."""

    async def scenario(api: Api) -> None:
        seen: set[tuple[str, str, str]] = set()
        good = {"authorization": f"Bearer {TOKEN}"}
        fhir_body = sample("f01-single-observation-wbc-leukopenic.json")
        requests: list[tuple[str, str, bytes, dict[str, str]]] = [
            ("POST", "/hl7v2", M02, {**HL7, **good}),
            ("POST", "/hl7v2", M19, {**AS_FHIR, **good}),
            ("POST", "/hl7v2", b"", {**HL7, **good}),
            ("POST", "/hl7v2", M02, HL7),
            ("POST", "/hl7v2", M02, {"content-type": FHIR, **good}),
            ("POST", "/hl7v2", M21, {**HL7, **good}),
            ("POST", "/fhir", fhir_body, {"content-type": FHIR, **good}),
            ("POST", "/fhir", b"{not json", {"content-type": FHIR, **good}),
            ("POST", "/fhir", b"", {"content-type": FHIR, **good}),
            ("POST", "/fhir", fhir_body, {"content-type": FHIR}),
            ("POST", "/fhir", fhir_body, {"content-type": ER7, **good}),
            (
                "POST",
                "/fhir",
                sample("f03-transaction-urn-uuid-neutropenia.json"),
                {"content-type": FHIR, **good},
            ),
            ("GET", "/healthz", b"", {}),
            ("GET", "/metrics", b"", good),
            ("GET", "/metrics", b"", {}),
            ("GET", "/openapi.json", b"", {}),
        ]
        for method, path, body, headers in requests:
            response = await api.client.request(method, path, content=body, headers=headers)
            seen.add((path, method.lower(), str(response.status_code)))
        assert {s for _, _, s in seen} >= {"200", "400", "401", "413", "415", "422"}
        document = openapi_document()
        missing = sorted(
            (path, method, status)
            for path, method, status in seen
            if status not in document["paths"][path][method]["responses"]
        )
        assert missing == []

    run(tmp_path, scenario, max_body=4096, token=TOKEN)


# -- content negotiation on POST /hl7v2 ------------------------------------------------------


@pytest.mark.parametrize(
    ("accept", "media_type"),
    [
        (None, ER7),
        ("*/*", ER7),
        (ER7, ER7),
        (FHIR, FHIR),
        ("application/json", FHIR),
        ("application/fhir+json; fhirVersion=4.0", FHIR),
        (f"{FHIR}, */*;q=0.5", FHIR),
        # a client that ranks the ACK first gets the ACK
        (f"{ER7}, {FHIR};q=0.1", ER7),
        (f"{FHIR};q=0.2, {ER7};q=0.9", ER7),
        (f"{FHIR};q=0", ER7),  # q=0: not acceptable
        # a generic client (axios, many LIS HTTP senders) accepting anything: the ACK
        ("application/json, text/plain, */*", ER7),
    ],
)
def test_hl7v2_answers_fhir_only_when_the_client_prefers_it(
    tmp_path: Path, accept: str | None, media_type: str
) -> None:
    async def scenario(api: Api) -> None:
        headers = {} if accept is None else {"accept": accept}
        response = await api.hl7(M02, **headers)
        assert response.status_code == 200
        assert response.headers["content-type"].split(";")[0] == media_type
        if media_type == ER7:
            assert msa(response.content) == ("AA", control_id(M02))
        else:
            assert response.json()["resourceType"] == "Bundle"

    run(tmp_path, scenario)

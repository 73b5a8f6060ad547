"""The HTTP API (Starlette on uvicorn), over the same engine as the MLLP listener.

======================  ===============================================================
``POST /hl7v2``         one HL7 v2 message (``x-application/hl7-v2+er7``,
                        ``application/hl7-v2``, ``text/plain``) → its ACK, HTTP 200
                        whatever MSA-1 says (the ACK carries the outcome; relays such as
                        mllp2http drop non-2xx answers); 503 + AR when it could not be
                        stored.  With ``Accept: application/fhir+json``: the Bundle(s)
                        (200) or the OperationOutcome (422) instead.
``POST /fhir``          FHIR JSON or NDJSON → the Bundle, a ``collection`` Bundle of
                        the Bundles and OperationOutcomes when there are several (200), or
                        an OperationOutcome (422 every report rejected, 503 not stored).
``GET /healthz``        ``{"status": "ok"}`` (503 while stopping, and 503 ``degraded``
                        with the reason when delivery to the FHIR server stopped: 401/403);
                        never authenticated.
``GET /metrics``        Prometheus text format.
``GET /openapi.json``   this API described (OpenAPI 3.1).
======================  ===============================================================

Bodies over the size limit get 413 (checked on Content-Length, then while reading); a
wrong media type 415; with a bearer token configured, a request without it 401.

A fault of ours while processing a message (it is kept as failed in the journal): the AR
ACK (ERR 207) with 200 on ``/hl7v2``, as for every ACK; HTTP 500 with an OperationOutcome
(issue code ``exception``) on ``/fhir`` and for ``Accept: application/fhir+json``.  Any
other unexpected exception in a route is a 500 OperationOutcome too, and a log line with
its type, never a traceback.

Why Starlette + uvicorn: both small, typed, widely deployed and maintained; the API is a
handful of routes on raw bodies, so FastAPI's model layer would add weight and nothing
else; uvicorn runs inside the service's own event loop, beside the MLLP listener.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from leukofhir.emit.jsonio import dumps
from leukofhir.emit.outcome import build_operation_outcome
from leukofhir.errors import ErrorCode, error
from leukofhir.logs import get_logger
from leukofhir.serve.fault import Fault
from leukofhir.serve.intake import Intake, Reply, Ticket
from leukofhir.serve.metrics import CONTENT_TYPE as METRICS_TYPE
from leukofhir.serve.metrics import Metrics
from leukofhir.serve.openapi import openapi_document
from leukofhir.serve.reply import fhir_reply, processing_fault, refusal_body

__all__ = ["HttpSettings", "build_app"]

log = get_logger("leukofhir.serve.http")

ER7 = "x-application/hl7-v2+er7"
FHIR_JSON = "application/fhir+json"
HL7_TYPES = frozenset({ER7, "application/hl7-v2", "application/hl7-v2+er7", "text/plain"})
FHIR_TYPES = frozenset(
    {
        FHIR_JSON,
        "application/json",
        "application/fhir+ndjson",
        "application/ndjson",
        "application/x-ndjson",
    }
)


@dataclass(frozen=True, slots=True)
class HttpSettings:
    host: str = "127.0.0.1"
    port: int = 8080
    max_body: int = 1 << 20  # bytes
    token: str = ""  # bearer token; "" = no authentication


class RefusedError(Exception):
    """A request refused before it reaches the engine (HTTP status, OperationOutcome)."""

    def __init__(
        self, status: int, text: str, code: ErrorCode = ErrorCode.VALUE_TOO_LONG, kind: str = ""
    ) -> None:
        super().__init__(text)
        self.status = status
        self.code = code
        self.kind = kind  # OperationOutcome issue type when the code's is not right


def build_app(
    intake: Intake,
    settings: HttpSettings,
    metrics: Metrics,
    *,
    stopping: Callable[[], bool] = lambda: False,
    problem: Callable[[], str] | None = None,
) -> Starlette:
    """``problem``: why the service is degraded ("" when it is not): /healthz says 503."""

    async def post_hl7v2(request: Request) -> Response:
        body = await _body(request, settings, HL7_TYPES)
        as_fhir = _accepts_fhir(request)
        ticket = await intake.submit(body, format="hl7v2", channel="http")
        reply = await ticket.reply
        if as_fhir:
            return await _as_fhir(intake, ticket, reply)
        status = 503 if reply.outcome == "unstored" else 200
        return _er7(reply.body, status)

    async def post_fhir(request: Request) -> Response:
        body = await _body(request, settings, FHIR_TYPES)
        ticket = await intake.submit(body, format="fhir", channel="http")
        reply = await ticket.reply
        return Response(reply.body, int(reply.code), media_type=FHIR_JSON, headers=_retry(reply))

    async def healthz(_: Request) -> Response:
        if stopping():
            return JSONResponse({"status": "stopping"}, 503)
        reason = problem() if problem is not None else ""
        if reason:  # delivery to the FHIR server stopped (401/403): the service needs care
            return JSONResponse({"status": "degraded", "reason": reason}, 503)
        return JSONResponse({"status": "ok", "in_progress": intake.busy})

    async def metrics_route(_: Request) -> Response:
        return Response(metrics.exposition(), media_type=METRICS_TYPE)

    async def openapi(_: Request) -> Response:
        return JSONResponse(openapi_document())

    def guarded(
        handler: Callable[[Request], Awaitable[Response]],
    ) -> Callable[[Request], Awaitable[Response]]:
        async def run(request: Request) -> Response:
            try:
                if settings.token and not _authorised(request, settings.token):
                    raise RefusedError(
                        401, "a valid bearer token is required", ErrorCode.UNKNOWN_KEY, "login"
                    )
                return await handler(request)
            except RefusedError as refused:
                return _refusal(refused)
            except Exception as exc:  # a fault of ours: this request gets 500, no traceback
                log.error("request_failed", path=request.url.path, error=type(exc).__name__)
                text = f"leukofhir failed on this request ({type(exc).__name__})"
                return _refusal(RefusedError(500, text, ErrorCode.INTERNAL_ERROR, "exception"))

        return run

    return Starlette(
        routes=[
            Route("/hl7v2", guarded(post_hl7v2), methods=["POST"]),
            Route("/fhir", guarded(post_fhir), methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/metrics", guarded(metrics_route), methods=["GET"]),
            Route("/openapi.json", openapi, methods=["GET"]),
        ]
    )


async def _body(request: Request, settings: HttpSettings, types: frozenset[str]) -> bytes:
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type not in types:
        raise RefusedError(
            415,
            f"media type {media_type or '(none)'!r} is not accepted here; send one of "
            + ", ".join(sorted(types)),
            ErrorCode.DATA_TYPE,
            "not-supported",
        )
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > settings.max_body:
        raise RefusedError(413, _too_large(settings.max_body), kind="too-long")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > settings.max_body:
            raise RefusedError(413, _too_large(settings.max_body), kind="too-long")
        chunks.append(chunk)
    body = b"".join(chunks)
    if not body.strip():
        raise RefusedError(
            400, "the request body is empty", ErrorCode.REQUIRED_FIELD_MISSING, "required"
        )
    return body


async def _as_fhir(intake: Intake, ticket: Ticket, reply: Reply) -> Response:
    """The FHIR documents of an HL7 v2 message (a duplicate's are made again: identical)."""
    if ticket.entry is None:
        return Response(reply.body, 503, media_type=ER7, headers=_retry(reply))
    if reply.reason:  # failed (now or before): its OperationOutcome, not a new attempt
        issue = processing_fault(Fault.from_reason(reply.reason).error, ticket.entry.id)
        body = refusal_body(issue, seed=f"entry{ticket.entry.id}")
        return Response(body, 500, media_type=FHIR_JSON)
    results = reply.results or await intake.rerun(ticket)
    status, payload = fhir_reply(results, seed=f"entry{ticket.entry.id}")
    return Response(payload, status, media_type=FHIR_JSON)


def _accepts_fhir(request: Request) -> bool:
    """FHIR instead of the ACK only when the client prefers it (RFC 9110 q-values): a FHIR
    JSON type ranked above every range that covers the ACK (``*/*`` included)."""
    fhir = ack = 0.0
    for part in request.headers.get("accept", "").split(","):
        media_type, *parameters = (p.strip().lower() for p in part.split(";"))
        quality = 1.0
        for parameter in parameters:
            name, _, value = parameter.partition("=")
            if name.strip() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if media_type in (FHIR_JSON, "application/json"):
            fhir = max(fhir, quality)
        elif media_type in HL7_TYPES or media_type in ("*/*", "x-application/*", "text/*"):
            ack = max(ack, quality)
    return fhir > ack


def _authorised(request: Request, token: str) -> bool:
    given = request.headers.get("authorization", "")
    scheme, _, value = given.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(value.strip(), token)


def _refusal(refused: RefusedError) -> Response:
    issue = error(refused.code, str(refused), fhir_type=refused.kind)
    body = dumps(build_operation_outcome([issue], seed=str(refused), context="request"))
    headers = {"WWW-Authenticate": "Bearer"} if refused.status == 401 else None
    return Response(body, refused.status, media_type=FHIR_JSON, headers=headers)


def _er7(body: bytes, status: int) -> Response:
    return Response(body, status, media_type=ER7)


def _retry(reply: Reply) -> dict[str, str] | None:
    return {"Retry-After": "5"} if reply.outcome == "unstored" else None


def _too_large(limit: int) -> str:
    return f"the body is larger than {limit} bytes; raise --http-max-body if this is expected"

"""The OpenAPI 3.1 description of the HTTP API (written by hand: the API is five routes on
raw bodies; a test checks that it names exactly the routes the app serves)."""

from __future__ import annotations

from typing import Any

from leukofhir import __version__

__all__ = ["openapi_document"]

_OUTCOME = {"application/fhir+json": {"schema": {"$ref": "#/components/schemas/Resource"}}}
_ER7 = {"x-application/hl7-v2+er7": {"schema": {"type": "string"}}}


def _answer(description: str, content: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"description": description, **({"content": content} if content else {})}


def openapi_document() -> dict[str, Any]:
    unauthorised = {"401": _answer("bearer token missing or wrong", _OUTCOME)}
    refused = {
        "400": _answer("empty body", _OUTCOME),
        **unauthorised,
        "413": _answer("body larger than the configured limit", _OUTCOME),
        "415": _answer("media type not accepted", _OUTCOME),
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "leukofhir",
            "version": __version__,
            "description": "CBC results (HL7 v2 ORU^R01/OUL^R22, FHIR R4) → leukopenia rule"
            " set → FHIR R4 transaction Bundles.  Every message is journaled before it is"
            " answered; a re-sent message gets the same answer without new output.",
        },
        # a bearer token when the service is configured with one (none otherwise)
        "security": [{}, {"bearer": []}],
        "paths": {
            "/hl7v2": {
                "post": {
                    "summary": "Process one HL7 v2 message; answer its ACK (or its Bundles)",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "x-application/hl7-v2+er7": {"schema": {"type": "string"}},
                            "application/hl7-v2": {"schema": {"type": "string"}},
                            "text/plain": {"schema": {"type": "string"}},
                        },
                    },
                    "responses": {
                        "200": _answer(
                            "the ACK (MSA-1 AA, AE or AR; AR with ERR 207 when processing"
                            " failed on our side); with Accept: application/fhir+json the"
                            " Bundle, or a collection Bundle of several",
                            {**_ER7, **_OUTCOME},
                        ),
                        "422": _answer(
                            "Accept: application/fhir+json and the message was rejected",
                            _OUTCOME,
                        ),
                        "500": _answer(
                            "Accept: application/fhir+json and processing failed on our side"
                            " (kept as failed): OperationOutcome, issue code exception",
                            _OUTCOME,
                        ),
                        "503": _answer("not stored (journal or sink unavailable): AR", _ER7),
                        **refused,
                    },
                }
            },
            "/fhir": {
                "post": {
                    "summary": "Process FHIR R4 JSON (resource, Bundle) or NDJSON",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/fhir+json": {"schema": {"type": "object"}},
                            "application/json": {"schema": {"type": "object"}},
                            "application/fhir+ndjson": {"schema": {"type": "string"}},
                        },
                    },
                    "responses": {
                        "200": _answer("the Bundle, or a collection Bundle of several", _OUTCOME),
                        "422": _answer("every report rejected: OperationOutcome", _OUTCOME),
                        "500": _answer(
                            "processing failed on our side (kept as failed; a re-send gets the"
                            " same answer): OperationOutcome, issue code exception",
                            _OUTCOME,
                        ),
                        "503": _answer("not stored: OperationOutcome, Retry-After", _OUTCOME),
                        **refused,
                    },
                }
            },
            "/healthz": {
                "get": {
                    "summary": "Liveness (never authenticated)",
                    "responses": {"200": _answer("serving"), "503": _answer("stopping")},
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics",
                    "responses": {"200": _answer("text exposition format"), **unauthorised},
                }
            },
            "/openapi.json": {
                "get": {
                    "summary": "This document",
                    "responses": {"200": _answer("OpenAPI 3.1")},
                }
            },
        },
        "components": {
            "schemas": {
                "Resource": {
                    "type": "object",
                    "properties": {"resourceType": {"type": "string"}},
                    "required": ["resourceType"],
                }
            },
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }

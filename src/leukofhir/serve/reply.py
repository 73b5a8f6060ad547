"""What the service answers, built from results: the HL7 ACKs (application and commit
level, OUTPUT.md §3) and the HTTP answer to a FHIR body.  Pure: times and ids come in."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime

from leukofhir.emit.ack import build_ack
from leukofhir.emit.jsonio import dumps
from leukofhir.emit.outcome import build_operation_outcome
from leukofhir.errors import ErrorCode, Issue, Severity, error, information
from leukofhir.serve.header import msh_of
from leukofhir.serve.work import Result

__all__ = [
    "MAX_ERR",
    "application_ack",
    "commit_ack",
    "fhir_reply",
    "hl7_timestamp",
    "not_now",
    "processing_fault",
    "refusal_ack",
    "refusal_body",
    "store_failure",
    "worst_ack",
]

MAX_ERR = 12  # ERR segments per ACK: keeps an ACK well under a 4 KiB single-read client
MAX_ACK = 3072  # bytes: fewer ERR segments when their texts (which quote input) are long
MAX_TEXT = 240  # characters of one ERR text
_ACK_RANK = {"AA": 0, "AE": 1, "AR": 2}


def hl7_timestamp(moment: datetime) -> str:
    return moment.strftime("%Y%m%d%H%M%S%z")


def worst_ack(results: Sequence[Result]) -> str:
    return max((r.ack for r in results), key=_ACK_RANK.__getitem__, default="AR")


def application_ack(
    message: bytes, results: Sequence[Result], *, control_id: str, moment: datetime
) -> tuple[str, bytes]:
    """(MSA-1, the ACK) for a processed message: one ERR per warning or error (information
    stays in the OperationOutcome), at most :data:`MAX_ERR` of them, the last saying how
    many more are in the OperationOutcome."""
    code = worst_ack(results)
    issues = [i for r in results for i in r.issues if i.severity is not Severity.INFORMATION]
    return code, _fitted(message, code, issues, control_id=control_id, moment=moment)


def commit_ack(
    message: bytes, code: str, issues: Sequence[Issue], *, control_id: str, moment: datetime
) -> bytes:
    """The enhanced-mode accept acknowledgement: CA (stored), CE (could not be stored, send
    again later), CR (type, version or processing id not acceptable)."""
    return _fitted(message, code, list(issues), control_id=control_id, moment=moment)


def store_failure(reason: str) -> Issue:
    return error(
        ErrorCode.INTERNAL_ERROR,
        f"the message could not be stored ({reason}); it was NOT accepted: send it again later",
        fhir_type="transient",
    )


def not_now(reason: str) -> Issue:
    """A stored message that could not be finished now (the service is stopping)."""
    return error(
        ErrorCode.INTERNAL_ERROR,
        f"the message was not processed now ({reason}); it was NOT accepted: send it again later",
        fhir_type="transient",
    )


def processing_fault(kind: str, entry: int) -> Issue:
    """The answer's issue for a message whose processing raised an exception of type
    ``kind``: our fault, not the message's; it is kept as failed, and a re-send gets the
    same answer until an operator retries it."""
    return error(
        ErrorCode.INTERNAL_ERROR,
        f"leukofhir failed on this message ({kind}), a fault on our side: it is kept as"
        f" failed (journal entry {entry}) until an operator retries it; sending it again"
        " gets this answer",
        fhir_type="exception",
    )


def refusal_ack(message: bytes, issue: Issue, *, control_id: str, moment: datetime) -> bytes:
    """AR for a message the service could not keep or process now."""
    return _fitted(message, "AR", [issue], control_id=control_id, moment=moment)


def refusal_body(issue: Issue, *, seed: str) -> bytes:
    """The OperationOutcome answering a FHIR body the service could not keep now."""
    return dumps(build_operation_outcome([issue], seed=seed, context="request")) + b"\n"


def fhir_reply(results: Sequence[Result], *, seed: str) -> tuple[int, bytes]:
    """(HTTP status, body) for a FHIR body: 422 with an OperationOutcome when every report
    was rejected; otherwise 200 with the one document produced, or a ``collection`` Bundle
    of every Bundle and OperationOutcome in output order."""
    documents = [data for r in results for _, data in r.documents]
    if results and all(r.disposition == "rejected" for r in results):
        issues = [i for r in results for i in r.issues]
        outcome = build_operation_outcome(issues, seed=seed, context="request")
        return 422, dumps(outcome) + b"\n"
    if len(documents) == 1:
        return 200, documents[0]
    if not documents:  # processed nothing, said nothing: say so
        note = information(ErrorCode.ACCEPTED, "the body held no CBC to evaluate")
        outcome = build_operation_outcome([note], seed=seed, context="request")
        return 200, dumps(outcome) + b"\n"
    entries = b",".join(b'{"resource":' + d.rstrip(b"\n") + b"}" for d in documents)
    bundle_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"leukofhir:reply:{seed}"))
    head = dumps({"resourceType": "Bundle", "id": bundle_id, "type": "collection"})
    return 200, head[:-1] + b',"entry":[' + entries + b"]}\n"


def _fitted(
    message: bytes, code: str, issues: list[Issue], *, control_id: str, moment: datetime
) -> bytes:
    """The ACK with as many ERR segments (up to :data:`MAX_ERR`, texts cut to
    :data:`MAX_TEXT`) as fit in :data:`MAX_ACK` bytes; always the first one."""
    msh = msh_of(message)
    issues = [_shortened(i) for i in issues]
    most = MAX_ERR
    while True:
        ack = build_ack(
            msh, code, _capped(issues, most), control_id=control_id, timestamp=hl7_timestamp(moment)
        )
        if len(ack) <= MAX_ACK or most <= 2 or len(issues) <= 1:
            return ack
        most = min(most, len(issues)) - 1


def _shortened(issue: Issue) -> Issue:
    if len(issue.message) <= MAX_TEXT:
        return issue
    return replace(issue, message=issue.message[: MAX_TEXT - 3] + "...")


def _capped(issues: list[Issue], most: int = MAX_ERR) -> list[Issue]:
    if len(issues) <= most:
        return issues
    more = len(issues) - (most - 1)
    note = information(
        ErrorCode.ACCEPTED,
        f"{more} more issues are in the OperationOutcome written with the message's outputs",
    )
    return [*issues[: most - 1], note]

"""One error vocabulary for every edge.

An :class:`Issue` is the unit: a code from HL7 table 0357, a severity, a
:class:`Location` and a message a person can act on.  The same issue renders as
an OperationOutcome issue (``emit.outcome``), an ACK ERR segment and an HTTP
status, so no edge invents its own wording.

Parse failures raise; rule problems are collected as issues::

    LeukofhirError            carries .issue (and so a location and a 0357 code)
    ├── InputError            the input is unusable as a whole: rejected
    │   ├── FramingError      bytes are not an HL7 v2 message (no MSH, broken MSH-1/2)
    │   ├── UnsupportedError  a real message we do not process (type, version)
    │   └── StructureError    a segment or field the message cannot do without
    └── ConfigError           a mapping or profile file the user passed is wrong
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class ErrorCode(Enum):
    """HL7 table 0357 (message error condition codes)."""

    ACCEPTED = "0"
    SEGMENT_SEQUENCE = "100"
    REQUIRED_FIELD_MISSING = "101"
    DATA_TYPE = "102"
    TABLE_VALUE_NOT_FOUND = "103"
    VALUE_TOO_LONG = "104"
    UNSUPPORTED_MESSAGE_TYPE = "200"
    UNSUPPORTED_EVENT = "201"
    UNSUPPORTED_PROCESSING_ID = "202"
    UNSUPPORTED_VERSION = "203"
    UNKNOWN_KEY = "204"
    DUPLICATE_KEY = "205"
    RECORD_LOCKED = "206"
    INTERNAL_ERROR = "207"

    @property
    def text(self) -> str:
        return _CODE_TEXT[self]

    @property
    def fhir_issue_type(self) -> str:
        """The OperationOutcome ``issue.code`` (value set issue-type) closest to this code."""
        return _CODE_FHIR_TYPE[self]


_CODE_TEXT = {
    ErrorCode.ACCEPTED: "Message accepted",
    ErrorCode.SEGMENT_SEQUENCE: "Segment sequence error",
    ErrorCode.REQUIRED_FIELD_MISSING: "Required field missing",
    ErrorCode.DATA_TYPE: "Data type error",
    ErrorCode.TABLE_VALUE_NOT_FOUND: "Table value not found",
    ErrorCode.VALUE_TOO_LONG: "Value too long",
    ErrorCode.UNSUPPORTED_MESSAGE_TYPE: "Unsupported message type",
    ErrorCode.UNSUPPORTED_EVENT: "Unsupported event code",
    ErrorCode.UNSUPPORTED_PROCESSING_ID: "Unsupported processing id",
    ErrorCode.UNSUPPORTED_VERSION: "Unsupported version id",
    ErrorCode.UNKNOWN_KEY: "Unknown key identifier",
    ErrorCode.DUPLICATE_KEY: "Duplicate key identifier",
    ErrorCode.RECORD_LOCKED: "Application record locked",
    ErrorCode.INTERNAL_ERROR: "Application internal error",
}

_CODE_FHIR_TYPE = {
    ErrorCode.ACCEPTED: "informational",
    ErrorCode.SEGMENT_SEQUENCE: "structure",
    ErrorCode.REQUIRED_FIELD_MISSING: "required",
    ErrorCode.DATA_TYPE: "value",
    ErrorCode.TABLE_VALUE_NOT_FOUND: "code-invalid",
    ErrorCode.VALUE_TOO_LONG: "too-long",
    ErrorCode.UNSUPPORTED_MESSAGE_TYPE: "not-supported",
    ErrorCode.UNSUPPORTED_EVENT: "not-supported",
    ErrorCode.UNSUPPORTED_PROCESSING_ID: "not-supported",
    ErrorCode.UNSUPPORTED_VERSION: "not-supported",
    ErrorCode.UNKNOWN_KEY: "not-found",
    ErrorCode.DUPLICATE_KEY: "duplicate",
    ErrorCode.RECORD_LOCKED: "lock-error",
    ErrorCode.INTERNAL_ERROR: "exception",
}


class Severity(Enum):
    """Issue severity; ``value`` is the OperationOutcome code, :attr:`hl7` the table 0516 code."""

    FATAL = "fatal"
    ERROR = "error"
    WARNING = "warning"
    INFORMATION = "information"

    @property
    def hl7(self) -> str:
        return {"fatal": "F", "error": "E", "warning": "W", "information": "I"}[self.value]


@dataclass(frozen=True, slots=True)
class Location:
    """Where an issue is: an HL7 v2 position (``OBX[3]-5.2``), a FHIRPath expression, or a
    position in text that could not be parsed (``line``/``column``, from 1; with an
    expression too when it names the document, as ``$ndjson[7]`` does).

    ``sequence`` counts segments of the same name from 1, as HL7 ERR-2 (ERL) does.
    """

    segment: str = ""
    sequence: int | None = None
    field: int | None = None
    component: int | None = None
    expression: str = ""
    line: int | None = None
    column: int | None = None

    @property
    def position(self) -> str:
        """``Line[2] Col[7]`` (the HL7 FHIR validator's form), "" without a text position."""
        return f"Line[{self.line}] Col[{self.column}]" if self.line is not None else ""

    def __str__(self) -> str:
        if self.expression or self.line is not None:
            return " ".join(part for part in (self.expression, self.position) if part)
        text = self.segment
        if self.sequence is not None:
            text += f"[{self.sequence}]"
        if self.field is not None:
            text += f"-{self.field}"
            if self.component is not None:
                text += f".{self.component}"
        return text

    def at(self, field: int, component: int | None = None) -> Location:
        """The same segment, one field (and component) deeper."""
        return Location(self.segment, self.sequence, field, component)


NOWHERE = Location()


@dataclass(frozen=True, slots=True)
class Issue:
    """One problem (or note) about one input, with what to do about it."""

    severity: Severity
    code: ErrorCode
    message: str
    location: Location = NOWHERE
    fhir_type: str = ""  # overrides code.fhir_issue_type where a finer issue-type fits

    @property
    def issue_type(self) -> str:
        return self.fhir_type or self.code.fhir_issue_type

    @property
    def text(self) -> str:
        """``OBX[3]-5: message`` (the message alone when the issue has no location)."""
        where = str(self.location)
        return f"{where}: {self.message}" if where else self.message


class LeukofhirError(Exception):
    """Base of every error this package raises on purpose."""

    def __init__(self, issue: Issue) -> None:
        super().__init__(issue.text)
        self.issue = issue


def issue_for(exc: Exception, location: Location = NOWHERE) -> Issue:
    """The issue that rejects what ``exc`` interrupted: a :class:`LeukofhirError`'s own, else
    code 207 / ``exception`` naming only the exception's type (never the input's content)."""
    if isinstance(exc, LeukofhirError):
        return exc.issue
    return error(
        ErrorCode.INTERNAL_ERROR,
        f"leukofhir failed on this message ({type(exc).__name__}); the message is"
        " kept as rejected; please report it with the input",
        location,
        fhir_type="exception",
    )


class InputError(LeukofhirError):
    """The input as a whole cannot be processed; the message is rejected."""


class FramingError(InputError):
    """The bytes are not an HL7 v2 message (no MSH, unreadable MSH-1/MSH-2)."""


class UnsupportedError(InputError):
    """A well-formed message of a type, event or version that leukofhir does not process."""


class StructureError(InputError):
    """A segment or field the message cannot do without is missing or malformed."""


class UsageError(Exception):
    """A bad command line or setting: the command says why and exits with 2."""


class ConfigError(LeukofhirError):
    """A user-supplied mapping or profile file is unusable."""


def error(
    code: ErrorCode, message: str, location: Location = NOWHERE, *, fhir_type: str = ""
) -> Issue:
    return Issue(Severity.ERROR, code, message, location, fhir_type)


def warning(
    code: ErrorCode, message: str, location: Location = NOWHERE, *, fhir_type: str = ""
) -> Issue:
    return Issue(Severity.WARNING, code, message, location, fhir_type)


def information(
    code: ErrorCode, message: str, location: Location = NOWHERE, *, fhir_type: str = ""
) -> Issue:
    return Issue(Severity.INFORMATION, code, message, location, fhir_type)

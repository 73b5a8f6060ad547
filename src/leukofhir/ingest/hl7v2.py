"""An ORU^R01 / OUL^R22 message (already tokenised by :mod:`er7`) → :class:`LabMessage`.

Grouping (v2.5.1 §7.3.1 ORU_R01, §8.xx OUL_R22): each OBR opens an order group
and takes the ORC that stands right before it (never an earlier group's ORC);
every OBX belongs to the open group, also when it follows SPM or NTE; an NTE
after an OBX is that OBX's note.  An OBX before any OBR (OUL^R22 specimen
observations) is reported as not used, never dropped silently.
"""

from __future__ import annotations

import hashlib
import re
from decimal import Decimal, InvalidOperation
from functools import lru_cache

from leukofhir.errors import (
    ErrorCode,
    Issue,
    Location,
    StructureError,
    UnsupportedError,
    error,
    warning,
)
from leukofhir.ingest.dtm import DtmError, to_fhir_date, to_fhir_datetime
from leukofhir.ingest.er7 import Er7Message, Segment, Separators, components_of, decode_escapes
from leukofhir.limits import MAX_DIGITS, sent_number
from leukofhir.model import (
    LOINC,
    SNOMED,
    UCUM,
    Coding,
    Identifier,
    LabMessage,
    LabObservation,
    LabReport,
    Patient,
    Provider,
    Value,
)

SUPPORTED_TYPES = {("ORU", "R01"), ("OUL", "R22")}
OLDEST_VERSION = (2, 3)

# HL7 table 0396 coding system names → FHIR system URIs (only the ones we can vouch for)
CODING_SYSTEMS = {"LN": LOINC, "SCT": SNOMED, "SNOMED-CT": SNOMED, "UCUM": UCUM}
SEX = {"M": "male", "F": "female", "O": "other", "A": "other", "U": "unknown"}
COMPARATORS = ("<=", ">=", "<", ">")
# NM (v2.5.1 §2.A.47): digits with an optional sign and point, no exponent.  Written so that
# a character can match in only one way (``\d+\.?\d*`` tried every split of a digit run:
# 8,000 digits and a letter took 1.4 s), and used with fullmatch.
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)")


def read_lab_message(er7: Er7Message, raw: bytes, default_timezone: str) -> LabMessage:
    """Map one tokenised message; raises :class:`UnsupportedError`/:class:`StructureError`."""
    msh = er7.msh
    message_type, trigger = check_header(msh)
    reader = _Reader(default_timezone, er7.separators)
    reports, patient = reader.walk(er7.segments)
    control_id = msh.get(10)
    if not control_id:
        reader.warn(
            ErrorCode.REQUIRED_FIELD_MISSING,
            "MSH-10 (message control id) is empty; ids are derived from the message content",
            msh.location.at(10),
        )
    return LabMessage(
        source_format="hl7v2",
        digest=hashlib.sha256(raw).hexdigest(),
        control_id=control_id,
        sending_application=msh.get(3),
        sending_facility=msh.get(4),
        receiving_application=msh.get(5),
        receiving_facility=msh.get(6),
        message_type=message_type,
        trigger=trigger,
        version=msh.get(12),
        processing_id=msh.get(11),
        sent_at=reader.datetime(msh, 7),
        patient=patient,
        reports=reports,
        issues=er7.issues + tuple(reader.issues),
    )


def check_header(msh: Segment) -> tuple[str, str]:
    """MSH-9 and MSH-12 checked: (type, trigger), or the error that refuses the message
    (``StructureError``/``UnsupportedError``); the service uses it to answer CR."""
    message_type, trigger = msh.get(9, 1), msh.get(9, 2)
    where = msh.location.at(9)
    if not message_type:
        raise StructureError(
            error(
                ErrorCode.REQUIRED_FIELD_MISSING,
                "MSH-9 (message type) is empty; a lab result must say ORU^R01 or OUL^R22",
                where,
            )
        )
    if (message_type, trigger) not in SUPPORTED_TYPES:
        code = (
            ErrorCode.UNSUPPORTED_EVENT
            if message_type in {"ORU", "OUL"}
            else ErrorCode.UNSUPPORTED_MESSAGE_TYPE
        )
        raise UnsupportedError(
            error(
                code,
                f"message type {message_type}^{trigger} is not a lab"
                " result; leukofhir reads ORU^R01 and OUL^R22 only",
                where,
            )
        )
    version = msh.get(12)
    if version and _version_tuple(version) < OLDEST_VERSION:
        raise UnsupportedError(
            error(
                ErrorCode.UNSUPPORTED_VERSION,
                f"HL7 version {version} is older than 2.3, the oldest leukofhir reads",
                msh.location.at(12),
            )
        )
    return message_type, trigger


def _version_tuple(version: str) -> tuple[int, ...]:
    parts = re.findall(r"\d+", version)
    return tuple(int(part) for part in parts[:2]) if parts else (0,)


class _Reader:
    """Walks the segments once, keeping the open groups; collects warnings."""

    def __init__(self, default_timezone: str, separators: Separators) -> None:
        self.zone = default_timezone
        # the caches below key on the separators as one short string, whose hash is kept,
        # rather than on the six-field Separators hashed anew at every look-up
        self.separators_key = _key_of(separators)
        self.special = _special_characters(self.separators_key).search
        self.issues: list[Issue] = []

    def warn(self, code: ErrorCode, message: str, location: Location) -> None:
        self.issues.append(warning(code, message, location))

    def walk(self, segments: tuple[Segment, ...]) -> tuple[tuple[LabReport, ...], Patient | None]:
        patient: Patient | None = None
        reports: list[LabReport] = []
        orc: Segment | None = None
        obr: Segment | None = None
        order_control: Segment | None = None  # the ORC of the open OBR group
        obx_group: list[tuple[Segment, list[str]]] = []
        last_was_obx = False
        for segment in segments:
            name = segment.name
            if name == "OBX":
                if obr is None:
                    self.warn(
                        ErrorCode.SEGMENT_SEQUENCE,
                        f"{segment.location} stands before any"
                        " OBR (a specimen observation); not used",
                        segment.location,
                    )
                    last_was_obx = False
                    continue
                obx_group.append((segment, []))
                last_was_obx = True
                continue
            if name == "NTE" and last_was_obx:
                obx_group[-1][1].append(segment.get(3))
                continue
            last_was_obx = False
            if name == "PID":
                if patient is None:
                    patient = self.patient(segment)
                else:
                    self.warn(
                        ErrorCode.SEGMENT_SEQUENCE,
                        "a second PID in one message is not read; send one patient per message",
                        segment.location,
                    )
            elif name == "ORC":
                orc = segment
            elif name == "OBR":
                if obr is not None:
                    reports.append(self.report(obr, order_control, obx_group))
                obr, order_control, orc, obx_group = segment, orc, None, []
        if obr is not None:
            reports.append(self.report(obr, order_control, obx_group))
        return tuple(reports), patient

    # --- PID ------------------------------------------------------------------------------

    def patient(self, pid: Segment) -> Patient:
        identifiers = []
        for repetition in range(1, len(pid.repetitions(3)) + 1):
            value = pid.get(3, 1, repetition=repetition)
            if value:
                identifiers.append(
                    Identifier(
                        value=value,
                        system=pid.get(3, 4, 1, repetition) or pid.get(3, 4, 2, repetition),
                        type_code=pid.get(3, 5, repetition=repetition),
                    )
                )
        given = tuple(name for name in (pid.get(5, 2), pid.get(5, 3)) if name)
        return Patient(
            identifiers=tuple(identifiers),
            family=pid.get(5, 1),
            given=given,
            birth_date=self.date(pid, 7),
            gender=SEX.get(pid.get(8).upper(), ""),
        )

    # --- OBR / ORC ------------------------------------------------------------------------

    def report(
        self, obr: Segment, orc: Segment | None, obx_group: list[tuple[Segment, list[str]]]
    ) -> LabReport:
        placer = _entity(orc, 2) or _entity(obr, 2)
        filler = _entity(orc, 3) or _entity(obr, 3)
        return LabReport(
            location=obr.location,
            placer_order=Identifier(placer[0], placer[1], "PLAC") if placer else None,
            filler_order=Identifier(filler[0], filler[1], "FILL") if filler else None,
            codes=_codings(obr, 4),
            code_text=obr.get(4, 2) or obr.get(4, 5),
            effective=self.datetime(obr, 7) or self.datetime(obr, 8),
            issued=self.datetime(obr, 22),
            status=obr.get(25),
            observations=tuple(self.observation(obx, notes) for obx, notes in obx_group),
            ordering_provider=_provider(orc, 12) or _provider(obr, 16),
        )

    # --- OBX ------------------------------------------------------------------------------

    def observation(self, obx: Segment, notes: list[str]) -> LabObservation:
        # This runs for every OBX. A field without separator or escape characters (most are:
        # "NM", "F", "9.51") is taken as it stands, without Segment.get; coded fields are
        # split and decoded once per distinct text (codes and units repeat across messages).
        fields = obx.fields
        if len(fields) < 22:
            fields = fields + ("",) * (22 - len(fields))
        special = self.special

        def field(number: int) -> str:
            raw = fields[number]
            return obx.get(number) if special(raw) else raw

        codes, code_text = _coded(fields[3], self.separators_key)
        value_type = field(2)
        return LabObservation(
            location=obx.location,
            codes=codes,
            code_text=code_text,
            sub_id=field(4),
            value_type=value_type,
            value=self.value(obx, value_type),
            unit=_unit(fields[6], self.separators_key),
            reference_range=field(7),
            abnormal_flags=tuple(
                flag for raw in obx.repetitions(8) if (flag := _first_component(raw, obx))
            ),
            status=field(11),
            effective=self.to_datetime(field(14), obx, 14),
            notes=tuple(notes),
            identifier=field(21),
        )

    def value(self, obx: Segment, value_type: str) -> Value | None:
        raw = obx.raw(5)
        if not raw:
            return None
        if obx.separators.repetition in raw:
            repetitions = obx.repetitions(5)
            if not any(repetitions):
                return None
            self.warn(
                ErrorCode.DATA_TYPE,
                f"{obx.location}-5 holds {len(repetitions)} repetitions; a result needs one value",
                obx.location.at(5),
            )
            return Value(
                text="~".join(obx.get(5, 1, repetition=r) for r in range(1, len(repetitions) + 1)),
                number=None,
            )
        if value_type == "SN":
            return _structured_numeric(obx)
        return _plain_value(obx.get(5) if self.special(raw) else raw)

    # --- times ----------------------------------------------------------------------------

    def datetime(self, segment: Segment, field: int) -> str:
        return self.to_datetime(segment.get(field), segment, field)

    def to_datetime(self, text: str, segment: Segment, field: int) -> str:
        try:
            return to_fhir_datetime(text, self.zone)
        except DtmError as exc:
            self.warn(
                ErrorCode.DATA_TYPE, f"{exc}; the time is left out", segment.location.at(field)
            )
            return ""

    def date(self, segment: Segment, field: int) -> str:
        try:
            return to_fhir_date(segment.get(field)[:8])
        except DtmError as exc:
            self.warn(
                ErrorCode.DATA_TYPE, f"{exc}; the date is left out", segment.location.at(field)
            )
            return ""


def _entity(segment: Segment | None, field: int) -> tuple[str, str] | None:
    """An EI (entity identifier): its id and namespace, or None when empty."""
    if segment is None:
        return None
    value = segment.get(field, 1)
    return (value, segment.get(field, 2) or segment.get(field, 3)) if value else None


NPI = "NPI"  # HL7 table 0203: the US National Provider Identifier


def _provider(segment: Segment | None, field: int) -> Provider | None:
    """An XCN (ORC-12, OBR-16): its id with the assigning authority (XCN-9) and type
    (XCN-13), and the name parts; None when it holds neither an id nor a family name."""
    if segment is None:
        return None
    value, family = segment.get(field, 1), segment.get(field, 2)
    if not value and not family:
        return None
    authority = segment.get(field, 9, 1) or segment.get(field, 9, 2)
    identifier = Identifier(value, authority, segment.get(field, 13)) if value else None
    given = tuple(part for part in (segment.get(field, 3), segment.get(field, 4)) if part)
    return Provider(identifier=identifier, family=family, given=given)


def _codings(segment: Segment, field: int) -> tuple[Coding, ...]:
    return _cwe_codings(segment.components(field))


@lru_cache(maxsize=4096)
def _coded(raw: str, separators_key: str) -> tuple[tuple[Coding, ...], str]:
    """OBX-3 as sent → its codings and its text (cached: the same codes come again and again)."""
    components = components_of(raw, _separators_of(separators_key))
    return _cwe_codings(components), _at(components, 2) or _at(components, 5)


def _cwe_codings(components: tuple[str, ...]) -> tuple[Coding, ...]:
    """A CWE/CE: the primary coding (components 1-3) then the alternate (4-6)."""
    codings = []
    for first in (1, 4):
        if code := _at(components, first):
            source = _at(components, first + 2)
            codings.append(
                Coding(
                    code=code,
                    system=CODING_SYSTEMS.get(source.upper(), ""),
                    display=_at(components, first + 1),
                    source_system=source,
                )
            )
    return tuple(codings)


@lru_cache(maxsize=1024)
def _unit(raw: str, separators_key: str) -> Coding | None:
    """OBX-6 (CWE) as sent: the unit code, its text and its coding system (UCUM when it
    says so).  Cached on the field's text."""
    components = components_of(raw, _separators_of(separators_key))
    unit_code, unit_text, unit_system = _at(components, 1), _at(components, 2), _at(components, 3)
    if not unit_code and not unit_text:
        return None
    return Coding(
        code=unit_code or unit_text,
        system=CODING_SYSTEMS.get(unit_system.upper(), ""),
        display=unit_text,
        source_system=unit_system,
    )


def _key_of(separators: Separators) -> str:
    return "".join(
        (
            separators.field,
            separators.component,
            separators.repetition,
            separators.escape,
            separators.subcomponent,
            separators.truncation,
        )
    )


@lru_cache(maxsize=64)
def _separators_of(key: str) -> Separators:
    return Separators(key[0], key[1], key[2], key[3], key[4], key[5:])


@lru_cache(maxsize=64)
def _special_characters(separators_key: str) -> re.Pattern[str]:
    """Finds any character that makes a field more than plain text."""
    separators = _separators_of(separators_key)
    characters = (
        separators.component,
        separators.repetition,
        separators.subcomponent,
        separators.escape,
    )
    return re.compile("[" + "".join(re.escape(c) for c in characters) + "]")


def _at(components: tuple[str, ...], position: int) -> str:
    """Component ``position`` (1-based) of an already split field, "" when absent."""
    return components[position - 1] if position <= len(components) else ""


def _first_component(raw_repetition: str, segment: Segment) -> str:
    separators = segment.separators
    return decode_escapes(raw_repetition.split(separators.component, 1)[0], separators)


def _plain_value(text: str) -> Value:
    """An NM (or ST) value; a comparator written into the text (``<0.5``) is kept as one."""
    stripped = text.strip()
    if _NUMBER.fullmatch(stripped):  # the common case: a plain number
        if len(stripped) <= MAX_DIGITS:  # so short that it is within every bound
            return Value(text=text, number=Decimal(stripped))
        return sent_number(text, Decimal(stripped))
    for comparator in COMPARATORS:
        if stripped.startswith(comparator):
            number = _decimal(stripped[len(comparator) :].strip())
            if number is not None:
                return sent_number(text, number, comparator)
    return Value(text=text, number=None)


def _structured_numeric(obx: Segment) -> Value:
    """SN (v2.5.1 §2.A.73): comparator ^ num1 ^ separator/suffix ^ num2.

    Only ``[comparator]^num1`` is a single number; ranges, ratios and ``<>`` stay text.
    """
    comparator, num1, separator, num2 = (obx.get(5, c) for c in (1, 2, 3, 4))
    if separator or num2 or comparator not in ("", "=", *COMPARATORS):
        return Value(text="".join((comparator, num1, separator, num2)), number=None)
    text = comparator + num1  # "<0.5": what the lab meant, readable
    comparator = "" if comparator == "=" else comparator
    number = _decimal(num1.strip())
    if number is None:
        return Value(text=text, number=None, comparator=comparator)
    return sent_number(text, number, comparator)


def _decimal(text: str) -> Decimal | None:
    if not _NUMBER.fullmatch(text):
        return None
    try:
        return Decimal(text)
    except InvalidOperation:  # pragma: no cover - the pattern admits only numbers
        return None

"""The immutable records that flow through the core.

``ingest`` turns bytes into a :class:`LabMessage`; ``terminology`` turns each
:class:`LabReport` into a :class:`Cbc`; ``rules`` turns a :class:`Cbc` into an
:class:`Evaluation`; ``emit`` turns all of it into FHIR JSON.  Nothing here does
I/O and nothing is mutable: tuples, not lists; the records are :class:`typing.NamedTuple`
(cheaper to define and to build than frozen dataclasses: tens are built per message).

Dates and times are kept as FHIR ``dateTime`` strings (already converted from
HL7 DTM, with the offset the message gave or the configured default zone, and
never more precision than was sent).  Numbers are :class:`decimal.Decimal` so
that band edges compare exactly; the text as sent travels beside them.
"""

from __future__ import annotations

from decimal import Decimal
from enum import Enum
from typing import NamedTuple

from leukofhir.errors import Issue, Location

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
UCUM = "http://unitsofmeasure.org"


class Coding(NamedTuple):
    """One code.  ``system`` is a FHIR URI when the source system is known
    (``LN`` → ``http://loinc.org``), else empty; ``source_system`` is what was sent."""

    code: str
    system: str = ""
    display: str = ""
    source_system: str = ""


class Identifier(NamedTuple):
    value: str
    system: str = ""  # FHIR URI, or the HL7 assigning authority as sent
    type_code: str = ""  # v2-0203 identifier type (MR, PLAC, FILL, ...)


class Patient(NamedTuple):
    identifiers: tuple[Identifier, ...] = ()
    family: str = ""
    given: tuple[str, ...] = ()
    birth_date: str = ""  # FHIR date
    gender: str = ""  # FHIR administrative-gender code, or "" when not sent
    reference: str = ""  # FHIR input: the subject reference as sent (Patient/123, urn:uuid:...)


class Value(NamedTuple):
    """An observation value as sent (OBX-5 / valueQuantity)."""

    text: str  # exactly as sent, e.g. "05.100" or "<0.5"
    number: Decimal | None  # exact, None when not a number
    comparator: str = ""  # "", "<", "<=", ">", ">="
    problem: str = ""  # why a number as sent is not read as one (beyond leukofhir.limits)


class LabObservation(NamedTuple):
    """One result line (an OBX, or an input FHIR Observation)."""

    location: Location  # OBX[3], or a FHIRPath for FHIR input
    codes: tuple[Coding, ...]  # primary coding first, then alternates (CWE-4..6)
    code_text: str = ""
    sub_id: str = ""  # OBX-4
    value_type: str = ""  # OBX-2 (NM, SN, ST, ...)
    value: Value | None = None
    unit: Coding | None = None  # OBX-6: code, UCUM system when the sender said so
    reference_range: str = ""  # OBX-7 as sent
    abnormal_flags: tuple[str, ...] = ()  # OBX-8 repetitions
    status: str = ""  # OBX-11 (table 0085) as sent
    effective: str = ""  # FHIR dateTime (OBX-14)
    notes: tuple[str, ...] = ()  # NTE-3 following the OBX
    identifier: str = ""  # OBX-21, when sent
    # FHIR input only: how the output refers to the input resource instead of re-creating it
    reference: str = ""  # its fullUrl or "Observation/<id>"
    identifiers: tuple[Identifier, ...] = ()  # Observation.identifier, when that is all it has


class Provider(NamedTuple):
    """Who ordered the test (ORC-12, else OBR-16; FHIR: the ``requester`` of the
    ServiceRequest the report is ``basedOn``): whom a critical value is for."""

    identifier: Identifier | None = None
    family: str = ""
    given: tuple[str, ...] = ()
    display: str = ""  # a name as sent, when no parts are (FHIR Reference.display)

    @property
    def name(self) -> str:
        return " ".join((*self.given, self.family)).strip() or self.display


class LabReport(NamedTuple):
    """One order group: an OBR with its OBX (or a FHIR DiagnosticReport's members)."""

    location: Location  # OBR[1]
    placer_order: Identifier | None = None  # ORC-2 else OBR-2
    filler_order: Identifier | None = None  # ORC-3 else OBR-3
    codes: tuple[Coding, ...] = ()  # OBR-4
    code_text: str = ""
    effective: str = ""  # FHIR dateTime (OBR-7)
    issued: str = ""  # FHIR instant (OBR-22), only when sent to the second
    status: str = ""  # OBR-25 (table 0123) as sent
    observations: tuple[LabObservation, ...] = ()
    reference: str = ""  # FHIR input: the input DiagnosticReport's fullUrl or reference
    ordering_provider: Provider | None = None


class LabMessage(NamedTuple):
    """One whole input message, whatever format it came in."""

    source_format: str  # "hl7v2" | "fhir"
    digest: str  # sha256 hex of the message bytes: the seed of every derived id
    control_id: str = ""  # MSH-10
    sending_application: str = ""  # MSH-3.1
    sending_facility: str = ""  # MSH-4.1
    receiving_application: str = ""  # MSH-5.1
    receiving_facility: str = ""  # MSH-6.1
    message_type: str = ""  # MSH-9.1
    trigger: str = ""  # MSH-9.2
    version: str = ""  # MSH-12.1
    processing_id: str = ""  # MSH-11.1
    sent_at: str = ""  # FHIR dateTime (MSH-7)
    patient: Patient | None = None
    reports: tuple[LabReport, ...] = ()
    issues: tuple[Issue, ...] = ()  # warnings found while reading


# --- terminology: LabReport -> Cbc -----------------------------------------------------------


class Analyte(Enum):
    WBC = "wbc"
    NEUTROPHILS = "neutrophils"
    SEGMENTED_NEUTROPHILS = "segmented-neutrophils"
    BAND_NEUTROPHILS = "band-neutrophils"
    LYMPHOCYTES = "lymphocytes"
    MONOCYTES = "monocytes"
    EOSINOPHILS = "eosinophils"
    BASOPHILS = "basophils"
    HEMOGLOBIN = "hemoglobin"
    PLATELETS = "platelets"


class Measure(Enum):
    COUNT = "count"  # normalised to 10*9/L
    PERCENT = "percent"  # % of leukocytes
    MASS_CONCENTRATION = "mass-concentration"  # hemoglobin, normalised to g/dL


class CbcValue(NamedTuple):
    """One CBC field of one report, normalised (or the reason it cannot be used)."""

    analyte: Analyte
    measure: Measure
    loinc: str  # the LOINC code that identified it (for a derived value: the target code)
    observation: LabObservation | None  # the source line; None for a derived value
    number: Decimal | None = None  # normalised value; None when unusable
    comparator: str = ""  # kept from the source; an open bound, never dropped
    unit: str = ""  # normalised UCUM code: "10*9/L", "%", "g/dL"
    derived_from: tuple[CbcValue, ...] = ()  # WBC and percent for a derived count
    problem: str = ""  # why it cannot be used ("" when usable)

    @property
    def usable(self) -> bool:
        return not self.problem and self.number is not None

    @property
    def derived(self) -> bool:
        return bool(self.derived_from)

    @property
    def shown(self) -> str:
        """The normalised value for people: ``<0.5 10*9/L`` ("" when there is none)."""
        return f"{self.comparator}{self.number} {self.unit}" if self.number is not None else ""


class Cbc(NamedTuple):
    """The CBC fields of one report.  ``values`` holds one entry per (analyte, measure):
    the preferred source when several were sent (33256-9 over 6690-2, say)."""

    report: LabReport
    values: tuple[CbcValue, ...] = ()
    # CBC lines not chosen for the rules (a 6690-2 beside a 33256-9, a repeated code):
    # still emitted as Observations, never silently dropped
    superseded: tuple[CbcValue, ...] = ()
    unmapped: tuple[LabObservation, ...] = ()  # observations that are no CBC field
    issues: tuple[Issue, ...] = ()

    def get(self, analyte: Analyte, measure: Measure) -> CbcValue | None:
        for value in self.values:
            if value.analyte is analyte and value.measure is measure:
                return value
        return None


# --- rules: Cbc -> Evaluation ----------------------------------------------------------------


class Interpretation(NamedTuple):
    """v3 ObservationInterpretation code for one observation and where it came from."""

    code: str  # "L", "N", "H", "LL", "HH", "A", ...
    display: str
    source: str  # "lab-flag" | "lab-range" | "default-range"


class Evidence(NamedTuple):
    """One value a finding rests on, and the threshold it was compared with."""

    value: CbcValue
    threshold: str  # e.g. "< 4.3 10*9/L (leukopenia)", "< 3.0 (CTCAE grade 2)"


class Finding(NamedTuple):
    rule_id: str  # "leukopenia", "neutropenia", ...
    code: Coding  # SNOMED CT, or the project's local CodeSystem
    text: str  # "Leukopenia, CTCAE grade 2"
    grade: int | None = None  # CTCAE v5.0
    band: str = ""  # clinical band (neutropenia: mild / moderate / severe)
    priority: str = ""  # flag-priority code: PL | PM | PH
    critical: bool = False
    evidence: tuple[Evidence, ...] = ()
    considerations: tuple[str, ...] = ()
    next_steps: tuple[str, ...] = ()


class NotEvaluated(NamedTuple):
    rule_id: str
    reason: str  # a sentence a clinician can read: which value, why
    location: Location | None = None


class Evaluation(NamedTuple):
    rule_set_id: str
    rule_set_version: str
    findings: tuple[Finding, ...] = ()
    not_evaluated: tuple[NotEvaluated, ...] = ()
    # the interpretation of every CbcValue of Cbc.values and Cbc.superseded that has one
    interpretations: tuple[tuple[CbcValue, Interpretation], ...] = ()
    issues: tuple[Issue, ...] = ()
    disclaimer: str = ""
    profile: str = ""  # reference-interval profile name and version
    notes: tuple[str, ...] = ()  # which limits were used, whose (an age band, a patient's)
    # trend rules the rules step decided absent (the count is not below the limit in force
    # for the patient); the others are left to the lifecycle
    absent: tuple[str, ...] = ()

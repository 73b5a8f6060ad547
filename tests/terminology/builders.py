"""Builders for LabReport / LabObservation, so tests read like the CBC they describe.

``line("6690-2", "3.2", "10*3/uL")`` is one OBX; ``report(...)`` numbers the lines
OBX[1], OBX[2], ... in order.  Values are parsed the way the readers do: a leading
comparator is split off, the rest is a Decimal (None when it is not a number).
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from leukofhir.errors import Location
from leukofhir.model import LOINC, UCUM, Cbc, Coding, LabObservation, LabReport, Value
from leukofhir.terminology import build_cbc, load_terminology

_COMPARATORS = ("<=", ">=", "<", ">")


def value(text: str) -> Value:
    comparator = next((c for c in _COMPARATORS if text.startswith(c)), "")
    try:
        number: Decimal | None = Decimal(text[len(comparator) :])
    except InvalidOperation:
        number = None
    return Value(text, number, comparator)


def line(
    code: str,
    text: str | None,
    unit: str | None = None,
    *,
    status: str = "F",
    alternate: Coding | None = None,
    codes: tuple[Coding, ...] | None = None,
    reference_range: str = "",
    flags: tuple[str, ...] = (),
    unit_display: str = "",
) -> LabObservation:
    """One result line (LOINC ``code``, or ``codes`` as given); :func:`report` numbers it."""
    if codes is None:
        coding = Coding(code, LOINC, source_system="LN")
        codes = (coding,) if alternate is None else (coding, alternate)
    unit_coding = None
    if unit is not None or unit_display:
        unit_coding = Coding(unit or "", UCUM if unit else "", unit_display)
    return LabObservation(
        location=Location("OBX"),
        codes=codes,
        value_type="NM",
        value=value(text) if text is not None else None,
        unit=unit_coding,
        reference_range=reference_range,
        abnormal_flags=flags,
        status=status,
    )


def report(*lines: LabObservation) -> LabReport:
    numbered = tuple(
        obs._replace(location=Location("OBX", index)) for index, obs in enumerate(lines, start=1)
    )
    return LabReport(location=Location("OBR", 1), observations=numbered)


def wbc(text: str, unit: str = "10*3/uL", **kwargs: object) -> LabObservation:
    return line("6690-2", text, unit, **kwargs)  # type: ignore[arg-type]


def percent(code: str, text: str, **kwargs: object) -> LabObservation:
    return line(code, text, "%", **kwargs)  # type: ignore[arg-type]


def count(code: str, text: str, **kwargs: object) -> LabObservation:
    return line(code, text, "10*3/uL", **kwargs)  # type: ignore[arg-type]


# the LOINC codes tests use most
WBC, WBC_NRBC = "6690-2", "33256-9"
ANC, NEUT_PCT = "751-8", "770-8"
SEG, SEG_PCT, BAND, BAND_PCT = "768-2", "769-0", "763-3", "764-1"
ALC, LYMPH_PCT = "731-0", "736-9"
AMC, MONO_PCT = "742-7", "5905-5"
AEC, EOS_PCT = "711-2", "713-8"
ABC, BASO_PCT = "704-7", "706-2"
HGB, PLT = "718-7", "777-3"


TERMINOLOGY = load_terminology()


def cbc_of(*lines: LabObservation) -> Cbc:
    """The CBC of one report holding ``lines``, with the packaged tables."""
    return build_cbc(report(*lines), TERMINOLOGY)

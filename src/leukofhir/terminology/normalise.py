"""One result line → one normalised :class:`~leukofhir.model.CbcValue` (or why it is unusable).

Checks, in order, each refusing the value with a warning located at the field at
fault: the result status (OBX-11), a value (OBX-5) that is a finite number within the
input bounds (:mod:`leukofhir.limits`) with a known comparator, a unit (OBX-6) known
for the field's measure, and the physical range (not negative; a leukocyte count at
most ``max``; a percent at most 100).

Normalisation multiplies by the unit's factor exactly in Decimal (a factor of 1
keeps the number as sent, e.g. ``5.100``); only an inexact factor (hemoglobin in
mmol/L) is rounded, to the unit's quantum.  A comparator (``<0.5``) stays on the
value: its number is then an open bound, never an exact result.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal, DecimalException

from leukofhir.errors import ErrorCode, Issue, Location, warning
from leukofhir.model import CbcValue, LabObservation, Measure
from leukofhir.terminology.tables import Field, Terminology

__all__ = ["at_field", "normalise", "refuse"]

COMPARATORS = frozenset({"", "<", "<=", ">", ">="})
_ZERO = Decimal(0)
_ONE = Decimal(1)

# what a v2 field is called in a FHIR Observation, for issues on FHIR input
_FHIR_ELEMENT = {3: "code", 5: "value", 6: "value.code", 7: "referenceRange", 11: "status"}


def at_field(location: Location, field: int) -> Location:
    """``OBX[3]`` → ``OBX[3]-6``; a FHIRPath location gets the matching element instead."""
    if location.expression:
        return Location(expression=f"{location.expression}.{_FHIR_ELEMENT.get(field, 'value')}")
    return location.at(field)


def refuse(value: CbcValue, problem: str) -> CbcValue:
    """The same value, made unusable for ``problem``."""
    return CbcValue(
        value.analyte,
        value.measure,
        value.loinc,
        value.observation,
        None,
        value.comparator,
        value.unit,
        value.derived_from,
        problem,
    )


def _problem(
    obs: LabObservation, field: Field, problem: str, code: ErrorCode, at: int, fhir_type: str = ""
) -> tuple[CbcValue, Issue]:
    value = CbcValue(field.analyte, field.measure, field.loinc, obs, problem=problem)
    message = problem if field.loinc in problem else f"{field.label} ({field.loinc}): {problem}"
    if "not used" not in message:
        message += "; value not used"
    return value, warning(code, message, at_field(obs.location, at), fhir_type=fhir_type)


def normalise(
    obs: LabObservation, field: Field, terminology: Terminology
) -> tuple[CbcValue, Issue | None]:
    """The CBC value of ``obs`` (known to be ``field``), and the warning when it is unusable."""
    status = obs.status
    if status not in terminology.status_use and status.upper() not in terminology.status_use:
        return _status_problem(obs, field, terminology)
    sent = obs.value
    if sent is None or (sent.number is None and not sent.text.strip()):
        return _problem(
            obs, field, "no value sent", ErrorCode.REQUIRED_FIELD_MISSING, 5, "required"
        )
    number = sent.number
    if sent.problem:  # a number beyond leukofhir.limits: never formatted, never compared
        return _problem(obs, field, sent.problem, ErrorCode.DATA_TYPE, 5, "value")
    if number is None or not number.is_finite():
        return _problem(obs, field, f"value {sent.text!r} is not a number", ErrorCode.DATA_TYPE, 5)
    if sent.comparator not in COMPARATORS:
        return _problem(
            obs, field, f"comparator {sent.comparator!r} is not usable", ErrorCode.DATA_TYPE, 5
        )
    unit = field.unit_for(obs.unit)
    if unit is None:
        return _unit_problem(obs, field)
    if unit.factor != _ONE:
        try:
            number = number * unit.factor
            if unit.quantum is not None:
                number = number.quantize(unit.quantum, rounding=ROUND_HALF_EVEN)
        except DecimalException:  # an absurd exponent (1E+999999): overflow, not a value
            problem = f"value {sent.text!r} is out of any physical range; value not used"
            return _problem(obs, field, problem, ErrorCode.DATA_TYPE, 5, "value")
    if number < _ZERO:
        problem = f"value {sent.text!r} is negative; value not used"
        return _problem(obs, field, problem, ErrorCode.DATA_TYPE, 5, "value")
    limit = terminology.percent_max if field.measure is Measure.PERCENT else field.max
    if limit is not None and number > limit:
        problem = (
            f"value {sent.text!r} is {number} {unit.ucum}, above the physical limit of"
            f" {limit} {unit.ucum}; value not used"
        )
        return _problem(obs, field, problem, ErrorCode.DATA_TYPE, 5, "value")
    value = CbcValue(
        field.analyte, field.measure, field.loinc, obs, number, sent.comparator, unit.ucum
    )
    return value, None


def _status_problem(
    obs: LabObservation, field: Field, terminology: Terminology
) -> tuple[CbcValue, Issue]:
    status = obs.status
    meaning = terminology.status_refuse.get(status) or terminology.status_refuse.get(status.upper())
    if meaning is None:
        problem = f"status {status} (not a known result status): not used"
        return _problem(obs, field, problem, ErrorCode.TABLE_VALUE_NOT_FOUND, 11)
    problem = f"status {status} ({meaning}): not used"
    return _problem(obs, field, problem, ErrorCode.ACCEPTED, 11, "business-rule")


def _unit_problem(obs: LabObservation, field: Field) -> tuple[CbcValue, Issue]:
    unit = obs.unit
    spelled = (unit.code or unit.display) if unit else ""
    if not spelled.strip():
        problem = f"no unit sent for {field.label} ({field.loinc}); value not used"
        return _problem(obs, field, problem, ErrorCode.REQUIRED_FIELD_MISSING, 6, "required")
    problem = (
        f"unit {spelled!r} is not a known unit for {field.label} ({field.loinc}); value not used"
    )
    return _problem(obs, field, problem, ErrorCode.TABLE_VALUE_NOT_FOUND, 6)

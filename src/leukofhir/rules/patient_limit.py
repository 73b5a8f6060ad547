"""A patient's own lower ANC limit sent in the report: the Observation the rule file names
(``[patient_limits].observation``).

FHIR: a coding with that system and code.  HL7 v2: OBX-3 with that code and, as coding
system, the rule file's ``v2_system`` (``99LKF``) or the system URL.  Its value must be
one exact number (no comparator) in a count unit the unit table knows (converted to
10*9/L), within the rule file's accepted range (``[patient_limits].accepted``: 0.5 to
1.5, so that no limit hides a critical ANC), with a result status that is used; otherwise it is not
used, with a warning, and never guessed.  Its basis is its note (NTE / ``note``), else
"sent in the report".
"""

from __future__ import annotations

from decimal import Decimal

from leukofhir.errors import ErrorCode, Issue, warning
from leukofhir.model import LabObservation, LabReport, Measure
from leukofhir.rules.deployment import PatientLimit, accepted_range, refused
from leukofhir.rules.ruleset import PatientLimitCode, RuleSet
from leukofhir.terminology import Terminology
from leukofhir.terminology.normalise import at_field

__all__ = ["is_patient_limit", "observed_limit"]


def is_patient_limit(obs: LabObservation, code: PatientLimitCode) -> bool:
    wanted = code.coding
    for coding in obs.codes:  # a plain loop: every result line of every report passes here
        if coding.code != wanted.code:
            continue
        if wanted.system in (coding.system, coding.source_system) or (
            code.v2_system and coding.source_system == code.v2_system
        ):
            return True
    return False


def observed_limit(
    report: LabReport, rule_set: RuleSet, terminology: Terminology
) -> tuple[tuple[PatientLimit, LabObservation] | None, list[LabObservation], list[Issue]]:
    """(the limit the report gives and its Observation, every patient-limit Observation of
    the report, the warnings); the last usable one wins when there are several."""
    code = rule_set.patient_limit
    if code is None:
        return None, [], []
    found: tuple[PatientLimit, LabObservation] | None = None
    seen: list[LabObservation] = []
    issues: list[Issue] = []
    for obs in report.observations:
        if not is_patient_limit(obs, code):
            continue
        seen.append(obs)
        number, problem = _read(obs, terminology, accepted_range(rule_set))
        if number is None:
            issues.append(
                warning(
                    ErrorCode.DATA_TYPE,
                    f"{obs.location} (the patient's lower ANC limit): {problem}; not used",
                    at_field(obs.location, 5),
                    fhir_type="value",
                )
            )
            continue
        basis = "; ".join(note.strip() for note in obs.notes if note.strip())
        found = (PatientLimit(number, basis or "sent in the report", str(obs.location)), obs)
    return found, seen, issues


def _read(
    obs: LabObservation, terminology: Terminology, bounds: tuple[Decimal, Decimal]
) -> tuple[Decimal | None, str]:
    status = obs.status
    if status not in terminology.status_use and status.upper() not in terminology.status_use:
        return None, f"status {status!r} is not one whose results are used"
    value = obs.value
    if value is None or value.number is None or value.problem:
        return None, "no number sent"
    if value.comparator:
        return None, f"{value.text!r} is an open bound, and a limit must be exact"
    unit = terminology.unit_for(Measure.COUNT, obs.unit)
    if unit is None:
        spelled = (obs.unit.code or obs.unit.display) if obs.unit else ""
        return None, f"unit {spelled!r} is not a known count unit"
    number = value.number * unit.factor
    if why := refused(number, bounds):
        return None, why
    return number.normalize() if unit.factor != 1 else number, ""

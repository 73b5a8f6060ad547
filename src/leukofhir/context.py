"""What the pure core is given instead of reading the world: the clock, the zone, the knowledge."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from leukofhir.rules import RuleSet
from leukofhir.terminology import Terminology


@dataclass(frozen=True, slots=True)
class Context:
    """Everything :func:`leukofhir.pipeline.process` needs besides the input bytes.

    ``now`` is the processing time (Provenance.recorded); it is passed in, never
    read, so that the same input and the same ``now`` give byte-identical output.
    ``default_timezone`` is the IANA zone for HL7 times sent without an offset.
    """

    now: datetime
    terminology: Terminology
    rule_set: RuleSet
    default_timezone: str = "UTC"
    validate_structure: bool = False  # hl7apy structure check, reported as warnings
    validate_output: bool = False  # every Bundle through the fhir.resources models

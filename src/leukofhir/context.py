"""What the pure core is given instead of reading the world: the clock, the zone, the knowledge."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the rules and tables load when a context is built, not with this module
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
    # FHIR input: "other" writes the input's resources too (by identifier), so that the
    # output loads into any server; "source" refers to them as sent (writing back to the
    # server they came from)
    fhir_target: str = "other"


FHIR_TARGETS = ("other", "source")


@dataclass(frozen=True, slots=True)
class Settings:
    """What a :class:`Context` is built from, small enough to hand to a worker process
    (mapping files by path, not their tables): batch workers and service processes build
    theirs from it."""

    mappings: tuple[str, ...] = ()
    timezone: str = "UTC"
    validate_structure: bool = False
    validate_output: bool = False
    fhir_target: str = "other"

    def context(self, now: datetime) -> Context:
        from leukofhir.rules import load_rule_set
        from leukofhir.terminology import load_terminology

        return Context(
            now=now,
            terminology=load_terminology([Path(m) for m in self.mappings]),
            rule_set=load_rule_set(),
            default_timezone=self.timezone,
            validate_structure=self.validate_structure,
            validate_output=self.validate_output,
            fhir_target=self.fhir_target,
        )

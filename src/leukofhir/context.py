"""What the pure core is given instead of reading the world: the clock, the zone, the knowledge."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the rules and tables load when a context is built, not with this module
    from leukofhir.rules import RuleSet
    from leukofhir.rules.deployment import Deployment
    from leukofhir.terminology import Terminology


@dataclass(frozen=True, slots=True)
class Context:
    """Everything :func:`leukofhir.pipeline.process` needs besides the input bytes.

    ``now`` is the processing time (Provenance.recorded); it is passed in, never
    read, so that the same input and the same ``now`` give byte-identical output.
    ``default_timezone`` is the IANA zone for HL7 times sent without an offset.
    ``deployment`` is the deployment profile (``--profile``: its adult ANC limit and
    intervals, its patients' own ANC limits) with the paediatric profile; None: the
    packaged paediatric profile and nothing else.  ``notify_critical`` adds a
    CommunicationRequest to the ordering provider once per critical episode.
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
    deployment: Deployment | None = field(default=None, compare=False)
    notify_critical: bool = False

    @property
    def clinical(self) -> Deployment:
        """The deployment, or the default one (the packaged paediatric profile)."""
        from leukofhir.rules.deployment import default_deployment

        return self.deployment or default_deployment(self.rule_set)


FHIR_TARGETS = ("other", "source")


@dataclass(frozen=True, slots=True)
class Settings:
    """What a :class:`Context` is built from, small enough to hand to a worker process
    (mapping and profile files by path, not their tables): batch workers and service
    processes build theirs from it."""

    mappings: tuple[str, ...] = ()
    timezone: str = "UTC"
    validate_structure: bool = False
    validate_output: bool = False
    fhir_target: str = "other"
    profile: str = ""  # the deployment profile file ("" : none)
    notify_critical: bool = False

    def context(self, now: datetime) -> Context:
        from leukofhir.rules import load_rule_set
        from leukofhir.rules.deployment import load_deployment
        from leukofhir.terminology import load_terminology

        rule_set = load_rule_set()
        return Context(
            now=now,
            terminology=load_terminology([Path(m) for m in self.mappings]),
            rule_set=rule_set,
            default_timezone=self.timezone,
            validate_structure=self.validate_structure,
            validate_output=self.validate_output,
            fhir_target=self.fhir_target,
            deployment=load_deployment(Path(self.profile), rule_set) if self.profile else None,
            notify_critical=self.notify_critical,
        )

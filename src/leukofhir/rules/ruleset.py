"""The rule set as data: :class:`RuleSet` and its parts, read from a versioned TOML file.

The packaged file is ``data/leukopenia-v1.toml``; a deployment may pass its own (its
own reference-interval profile, a higher ANC lower limit, ...).  Every number is a
TOML string parsed as an exact Decimal (a float is refused), every SNOMED CT code must
pass its Verhoeff check digit, every grade table must be ordered and end at its
finding's threshold.  A file that breaks any of this raises
:class:`~leukofhir.errors.ConfigError` whose issue locates the key (``rules[2].grades``).
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import NamedTuple

from leukofhir.model import Analyte, Coding, Measure

__all__ = [
    "PRIORITIES",
    "Band",
    "CriticalLimit",
    "Deviation",
    "Grade",
    "Interval",
    "PancytopeniaRule",
    "Profile",
    "Resolution",
    "Rule",
    "RuleSet",
    "Source",
    "Texts",
    "ThresholdRule",
    "TrendRule",
    "interval_key",
]

PRIORITIES = frozenset({"PL", "PM", "PH"})  # http://hl7.org/fhir/flag-priority-code


class Source(NamedTuple):
    id: str
    citation: str
    url: str = ""


class Deviation(NamedTuple):
    """A departure from the article, and why."""

    id: str
    text: str
    reason: str


class Grade(NamedTuple):
    """CTCAE grade ``grade`` holds when the value is below ``below``."""

    grade: int
    below: Decimal


class Band(NamedTuple):
    """Clinical band ``band`` (mild / moderate / severe) holds when the value is below ``below``."""

    band: str
    below: Decimal


class Resolution(NamedTuple):
    """When a standing Flag's episode of a finding closes (LIFECYCLE.md): after ``after``
    consecutive reports where the finding was evaluated and absent, the last at least
    ``min_interval_hours`` after the first."""

    after: int = 2
    min_interval_hours: int = 24


class ThresholdRule(NamedTuple):
    """A finding from one absolute count: present when ``count < threshold`` (kind
    ``below``) or ``count > threshold`` (kind ``above``).

    ``grades`` and ``bands`` are ordered by ``below`` ascending (the most severe first);
    the first whose bound holds is the grade.  ``priority`` is for an ungraded finding.
    """

    id: str
    kind: str  # "below" | "above"
    analyte: Analyte
    threshold: Decimal
    unit: str
    name: str
    code: Coding
    grades: tuple[Grade, ...] = ()
    bands: tuple[Band, ...] = ()
    priority: str = ""
    sources: tuple[str, ...] = ()
    considerations: tuple[str, ...] = ()
    next_steps: tuple[str, ...] = ()
    label: str = ""  # how reasons name the count: "absolute neutrophil count"
    resolution: Resolution = Resolution()


class PancytopeniaRule(NamedTuple):
    """Present when the ``requires`` finding is, hemoglobin is below its limit for the
    patient's sex (key ``default`` when the sex is neither listed nor known) and the
    platelets are below ``platelets_below``."""

    id: str
    name: str
    code: Coding
    requires: str
    hemoglobin_below: Mapping[str, Decimal]
    hemoglobin_unit: str
    platelets_below: Decimal
    platelets_unit: str
    priority: str
    sources: tuple[str, ...] = ()
    considerations: tuple[str, ...] = ()
    next_steps: tuple[str, ...] = ()
    resolution: Resolution = Resolution()


class TrendRule(NamedTuple):
    """A fall of one count since the patient's previous report (kind ``fall``): present when
    that report was collected at most ``within_hours`` before, the count is now below
    ``now_below`` and, where given, it fell by at least ``fall_percent`` % and the previous
    value was above ``previous_above``.  Evaluated by the lifecycle fold, which knows the
    patient's reports (:mod:`leukofhir.lifecycle.trends`), never by :func:`evaluate`.
    ``children``: evaluated for patients under 18 too."""

    id: str
    analyte: Analyte
    within_hours: int
    now_below: Decimal
    unit: str
    name: str
    code: Coding
    priority: str
    fall_percent: Decimal | None = None
    previous_above: Decimal | None = None
    children: bool = False
    sources: tuple[str, ...] = ()
    considerations: tuple[str, ...] = ()
    next_steps: tuple[str, ...] = ()
    label: str = ""  # how texts name the count: "absolute neutrophil count"
    resolution: Resolution = Resolution()
    kind: str = "fall"


Rule = ThresholdRule | PancytopeniaRule | TrendRule


class CriticalLimit(NamedTuple):
    """A count below ``below`` is critical: interpretation ``interpretation`` (LL), priority PH."""

    analyte: Analyte
    below: Decimal
    interpretation: str
    source: str = ""


class Interval(NamedTuple):
    """A default reference interval, inclusive at both ends, in the normalised unit."""

    analyte: Analyte
    measure: Measure
    low: Decimal
    high: Decimal
    unit: str


def interval_key(analyte: Analyte, measure: Measure) -> tuple[str, str]:
    """The key of :attr:`Profile.intervals`: the members' names, whose hashes are cached
    (an Enum member's own hash is computed in Python on every lookup)."""
    return analyte._name_, measure._name_


class Profile(NamedTuple):
    """The default reference intervals, named and versioned (it goes into the output)."""

    name: str
    version: str
    intervals: Mapping[tuple[str, str], Interval]  # by interval_key(analyte, measure)
    source: str = ""

    @property
    def label(self) -> str:
        return f"{self.name} {self.version}"

    def interval(self, analyte: Analyte, measure: Measure) -> Interval | None:
        return self.intervals.get((analyte._name_, measure._name_))


class Texts(NamedTuple):
    graded: str  # "{name}, CTCAE grade {grade}"
    graded_band: str  # "{name}, CTCAE grade {grade} ({band})"
    critical: str  # "{text}, critical value"
    limited: str = (
        "{text}; limit {symbol} {limit} {unit} for {basis}"  # another limit than the file's
    )
    fall: str = (
        "{name}: {label} {previous} at {previous_time} to {current} at {current_time}{change}"
    )


class PatientLimitCode(NamedTuple):
    """The input Observation that carries a patient's own lower ANC limit: its code (FHIR
    ``system``/``code``; HL7 v2 OBX-3 with ``v2_system`` or the system URL as coding system)."""

    coding: Coding
    v2_system: str = ""
    # the accepted range of a patient's (or a deployment's) lower ANC limit, both ends
    # included: below the critical ANC limit it would hide a critical value, above the
    # adult limit it is no lower limit for a lower-than-usual count ([patient_limits])
    lowest: Decimal = Decimal("0.5")
    highest: Decimal = Decimal("1.5")


class RuleSet(NamedTuple):
    """Everything from one rule file.  Immutable; its mappings are read-only views."""

    id: str
    version: str
    title: str
    disclaimer: str
    rules: tuple[Rule, ...]
    critical: tuple[CriticalLimit, ...]
    grade_priority: Mapping[int, str]
    critical_priority: str
    texts: Texts
    labels: Mapping[tuple[Analyte, Measure], str]
    profile: Profile
    interpretations: Mapping[str, str]  # v3 ObservationInterpretation code → display
    policy: Mapping[str, str]
    sources: tuple[Source, ...] = ()
    deviations: tuple[Deviation, ...] = ()
    origin: str = ""  # the file it was read from ("" for the packaged file)
    patient_limit: PatientLimitCode | None = None

    @property
    def trend_analytes(self) -> tuple[Analyte, ...]:
        """The counts the trend rules read, in rule order (what the lifecycle state keeps of
        each report besides its findings)."""
        out: list[Analyte] = []
        for rule in self.rules:
            if isinstance(rule, TrendRule) and rule.analyte not in out:
                out.append(rule.analyte)
        return tuple(out)

    def critical_below(self, analyte: Analyte) -> Decimal | None:
        """The critical limit of a count (None when it has none)."""
        return next((c.below for c in self.critical if c.analyte is analyte), None)

    def label(self, analyte: Analyte, measure: Measure) -> str:
        label = self.labels.get((analyte, measure))
        return label if label is not None else f"{analyte.value} {measure.value}"

    def rule(self, rule_id: str) -> Rule | None:
        return next((rule for rule in self.rules if rule.id == rule_id), None)

"""Flag: one standing Flag per patient and finding episode (LIFECYCLE.md), written by
conditional update on its deterministic identifier.

What it shows comes from the episode alone, so that the same episode gives the same
Flag whichever Bundle writes it: priority and CTCAE grade of the latest report, the
nadir of the episode, the period, and ``flag-detail`` references to the latest
DiagnosticReport and the Observations the finding rested on, *by identifier* (the report
may sit in another Bundle; a search by identifier finds it on any server)."""

from __future__ import annotations

from decimal import Decimal

from leukofhir.emit.datatypes import (
    BASE,
    DEVICE,
    Json,
    coding,
    conditional_update,
    decimal,
    logical_reference,
    text,
)
from leukofhir.lifecycle.episodes import Episode, Point
from leukofhir.lifecycle.fold import FlagWrite
from leukofhir.model import UCUM
from leukofhir.rules import RuleSet

__all__ = ["CTCAE_GRADE", "FLAG_DETAIL", "NADIR", "build_flag", "flag_text"]

FLAG_PRIORITY = "http://hl7.org/fhir/StructureDefinition/flag-priority"
FLAG_DETAIL = "http://hl7.org/fhir/StructureDefinition/flag-detail"
PRIORITY_SYSTEM = "http://hl7.org/fhir/flag-priority-code"
CTCAE_GRADE = f"{BASE}/StructureDefinition/ctcae-grade"
NADIR = f"{BASE}/StructureDefinition/episode-nadir"
PRIORITY_DISPLAY = {
    "PN": "No alarm",
    "PL": "Low priority",
    "PM": "Medium priority",
    "PH": "High priority",
}
LAB_CATEGORY = {
    "coding": [
        {
            "system": "http://terminology.hl7.org/CodeSystem/flag-category",
            "code": "lab",
            "display": "Lab",
        }
    ]
}


def build_flag(write: FlagWrite, rule_set: RuleSet, *, subject: Json) -> tuple[Json, Json]:
    """The resource and its ``request`` (PUT ``Flag?identifier=…``).  A withdrawn Flag
    keeps only what names it: its finding, subject and start."""
    rule = rule_set.rule(write.rule)
    extensions: list[Json] = []
    episode = write.episode
    if episode is not None:
        extensions = _extensions(episode)
    identifier = {"system": f"{BASE}/sid/flag", "value": write.identifier}
    code: Json = {"text": text(flag_text(write, rule_set))}
    if rule is not None:
        code = {"coding": [coding(rule.code)], **code}
    resource: Json = {"resourceType": "Flag"}
    if extensions:
        resource["extension"] = extensions
    resource |= {
        "identifier": [identifier],
        "status": write.status,
        "category": [LAB_CATEGORY],
        "code": code,
        "subject": subject,
    }
    period = {"start": write.start.shown}
    if episode is not None and episode.end is not None:
        period["end"] = episode.end.shown
    if period["start"]:
        resource["period"] = period
    resource["author"] = DEVICE
    return resource, conditional_update("Flag", identifier)


def _extensions(episode: Episode) -> list[Json]:
    """Priority and CTCAE grade of the latest report, ``flag-detail`` references to it and
    to the Observations it rested on, and the nadir of the episode."""
    latest = episode.latest.seen
    extensions: list[Json] = []
    if latest.priority:
        extensions.append(
            {
                "url": FLAG_PRIORITY,
                "valueCodeableConcept": {
                    "coding": [
                        {
                            "system": PRIORITY_SYSTEM,
                            "code": latest.priority,
                            "display": PRIORITY_DISPLAY.get(latest.priority, latest.priority),
                        }
                    ]
                },
            }
        )
    details = [logical_reference("DiagnosticReport", episode.latest.report)]
    details.extend(logical_reference("Observation", key) for key in latest.evidence)
    extensions.extend({"url": FLAG_DETAIL, "valueReference": ref} for ref in details)
    if latest.grade is not None:
        extensions.append({"url": CTCAE_GRADE, "valueInteger": latest.grade})
    extensions.append(_nadir(episode.nadir))
    return extensions


def flag_text(write: FlagWrite, rule_set: RuleSet) -> str:
    """What the Flag stands for now: ``Neutropenia, CTCAE grade 3 (moderate) since
    2026-03-02; nadir 0.4 10*9/L on 2026-03-04``; when resolved, the period and the worst."""
    rule = rule_set.rule(write.rule)
    name = rule.name if rule is not None else write.rule
    start = _day(write.start)
    episode = write.episode
    if episode is None:
        return (
            f"{name} since {start}: withdrawn, the reports it rested on no longer show it"
            " (corrected, withdrawn, or part of another episode)"
        )
    nadir = _nadir_text(episode.nadir)
    if episode.end is None:
        return f"{episode.latest.seen.text} since {start}; {nadir}"
    worst = episode.nadir.seen
    grade = f"; worst CTCAE grade {worst.grade}" if worst.grade is not None else ""
    return f"{name} from {start} to {_day(episode.end)}, resolved{grade}; {nadir}"


def _day(point: Point) -> str:
    """The collection date as the laboratory wrote it (its own time zone)."""
    return point.shown[:10] or "an unknown date"


def _nadir_text(point: Point) -> str:
    return f"nadir {point.seen.value or 'not stated'} on {_day(point)}"


def _nadir(point: Point) -> Json:
    """The worst report of the episode: its grade, value and collection time."""
    seen = point.seen
    parts: list[Json] = []
    if seen.grade is not None:
        parts.append({"url": "grade", "valueInteger": seen.grade})
    if seen.number:
        quantity: Json = {"value": decimal(Decimal(seen.number))}
        if seen.comparator:
            quantity["comparator"] = seen.comparator
        if seen.unit:
            quantity |= {"unit": seen.unit, "system": UCUM, "code": seen.unit}
        parts.append({"url": "value", "valueQuantity": quantity})
    if point.shown:
        parts.append({"url": "collected", "valueDateTime": point.shown})
    return {"url": NADIR, "extension": parts}

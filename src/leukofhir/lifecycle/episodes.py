"""Episodes of one finding: the reports of a patient folded, in collection order, into the
periods a standing Flag stands for (LIFECYCLE.md, "Standing Flags").

* An episode opens at the first report where the finding is present.
* While it is open, a report where it is present updates it in place: the latest report
  (grade, priority, evidence) and the worst of the episode (the nadir).
* It closes only after ``resolution.after`` consecutive reports where the finding was
  evaluated and absent, the last at least ``resolution.min_interval_hours`` after the
  first; ``end`` is the collection time of the first of them.
* A report where the finding was not evaluated (or that was withdrawn) neither extends
  nor closes it.
* ``critical_from`` is the first report of the episode where the finding rested on a
  critical value: the report whose Bundle asks once for the ordering provider to be told.

:func:`advance` is one step of the fold: pure, and cheap enough to run for every rule of
every report of a patient's window.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import NamedTuple

from leukofhir.lifecycle.facts import ABSENT, PRESENT, Seen
from leukofhir.lifecycle.instants import hours_between
from leukofhir.rules import Resolution

__all__ = ["Episode", "Point", "advance"]


class Point(NamedTuple):
    """One report's view of one finding, where the fold stands."""

    report: str  # the report identifier ("system|value")
    collected: str  # UTC instant (the order)
    shown: str  # the collection time as sent
    seen: Seen


@dataclass(frozen=True, slots=True)
class Episode:
    rule: str
    opened_by: str  # the report that opened it: the Flag's identity
    start: Point  # the first report where the finding was present
    latest: Point  # the latest such report: grade, priority, evidence now
    nadir: Point  # the worst such report
    end: Point | None = None  # the first report of the run that closed it
    pending: tuple[Point, ...] = ()  # absent reports since ``latest`` (a run not yet closing)
    critical_from: str = ""  # the first report where the finding was critical ("" : none)

    @property
    def active(self) -> bool:
        return self.end is None


def advance(
    open_episode: Episode | None,
    point: Point,
    resolution: Resolution,
    *,
    low_is_worse: bool,
) -> tuple[Episode | None, Episode | None]:
    """One report folded into the open episode of its finding: (the episode it closed,
    the episode open after it)."""
    state = point.seen.state
    if state == PRESENT:
        kept = _lite(point)
        critical = point.report if point.seen.critical else ""
        if open_episode is None:
            episode = Episode(point.seen.rule, point.report, kept, point, kept)
            return None, replace(episode, critical_from=critical) if critical else episode
        nadir = open_episode.nadir
        if point.seen.worse_than(nadir.seen, low_is_worse=low_is_worse):
            nadir = kept
        return None, replace(
            open_episode,
            latest=point,
            nadir=nadir,
            pending=(),
            critical_from=open_episode.critical_from or critical,
        )
    if state != ABSENT or open_episode is None:
        return None, open_episode
    pending = (*open_episode.pending, point)
    if len(pending) >= resolution.after and (
        hours_between(pending[0].collected, point.collected) >= resolution.min_interval_hours
    ):
        return replace(open_episode, end=pending[0], pending=()), None
    return None, replace(open_episode, pending=pending)


def _lite(point: Point) -> Point:
    """A point kept for its time and value only (an episode's start and nadir): the latest
    report's text, priority and evidence are what a Flag shows, no other's."""
    seen = point.seen
    if not (seen.text or seen.priority or seen.evidence):
        return point
    lite = Seen(
        seen.rule,
        seen.state,
        seen.grade,
        number=seen.number,
        comparator=seen.comparator,
        unit=seen.unit,
    )
    return Point(point.report, point.collected, point.shown, lite)

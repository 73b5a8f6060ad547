"""The lifecycle as a pure fold: ``(patient state, report facts) -> (writes, new state)``.

For one report version (LIFECYCLE.md):

1. **Versions.** A version older than the newest applied for the same report is
   *superseded*: it writes nothing of the report and changes no state.  A newer version
   replaces the older one; results the older version wrote and the newer one no longer
   holds are *withdrawn* (written ``entered-in-error`` by the emitter), so that nothing
   is left ``preliminary`` in silence (snapshot semantics, as Google's HL7v2 pipeline
   orders snapshots).
2. **Episodes.** The patient's reports (the newest version of each) are folded per
   finding in collection order (:mod:`leukofhir.lifecycle.episodes`); each episode is one
   standing Flag, identified by the patient, the finding and the report that opened it.
3. **Flags.** A Flag whose content changed is written; an unchanged one is not; a Flag
   written before that the fold no longer produces (its reports were corrected away,
   withdrawn, or a late report merged its episode into another) is written
   ``entered-in-error``: a Flag a clinician may have seen is withdrawn, never deleted.

The same set of report versions gives the same Flags whatever the order they came in.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace

from leukofhir.emit.datatypes import uuid_value
from leukofhir.lifecycle.episodes import Episode, Point, advance
from leukofhir.lifecycle.facts import (
    WITHDRAWN_STATUSES,
    ReportFacts,
    Result,
    Seen,
    Version,
)
from leukofhir.lifecycle.state import CLOSED_FLAGS, VERSIONS, WINDOW, FlagRecord, PatientState
from leukofhir.rules import RuleSet, ThresholdRule

__all__ = ["ACTIVE", "INACTIVE", "RETRACTED", "FlagWrite", "Writes", "flag_identifier", "fold"]

ACTIVE = "active"
INACTIVE = "inactive"
RETRACTED = "entered-in-error"
_NOT_SEEN = Seen("", "")


@dataclass(frozen=True, slots=True)
class FlagWrite:
    """A standing Flag to write (it is new or it changed)."""

    identifier: str  # the uuid value of Flag.identifier
    status: str  # ACTIVE | INACTIVE | RETRACTED
    episode: Episode


@dataclass(frozen=True, slots=True)
class Writes:
    """What one report version changes beyond its own resources."""

    superseded_by: Version | None = None  # an older version: write nothing of the report
    withdrawn: tuple[Result, ...] = ()  # results of the replaced version it no longer holds
    flags: tuple[FlagWrite, ...] = ()
    frozen: bool = False  # collected before the state's horizon: no Flag can change


def flag_identifier(patient: str, rule: str, opened_by: str) -> str:
    """A standing Flag's identity: the patient, the finding and the report that opened it."""
    return uuid_value("Flag", patient, rule, opened_by)


def fold(state: PatientState, facts: ReportFacts, rule_set: RuleSet) -> tuple[Writes, PatientState]:
    applied = state.version_of(facts.report)
    if applied is not None and facts.version < applied:
        return Writes(superseded_by=applied), state
    prior = state.report(facts.report)
    withdrawn: tuple[Result, ...] = ()
    if prior is not None and prior.version != facts.version:
        kept = {result.identifier for result in facts.results}
        withdrawn = tuple(
            r
            for r in prior.results
            if r.identifier not in kept and r.status not in WITHDRAWN_STATUSES
        )
    reports = [r for r in state.reports if r.report != facts.report]
    frozen = bool(state.horizon[0]) and facts.key <= state.horizon
    versions = state.versions
    if frozen:
        versions = _remember(versions, ((facts.report, facts.version),))
    else:
        reports.append(facts)
        reports.sort(key=_key)
    episodes = _episodes(state.base, reports, rule_set)
    flags, records = _flags(state, facts.patient, episodes)
    new_state = _prune(
        PatientState(tuple(reports), state.horizon, state.base, versions, records), rule_set
    )
    return Writes(None, withdrawn, flags, frozen), new_state


def _key(report: ReportFacts) -> tuple[str, str]:
    return report.key


def _episodes(
    base: tuple[Episode, ...], reports: list[ReportFacts], rule_set: RuleSet
) -> list[Episode]:
    """Every episode of the window: those open at the horizon carried on, then new ones."""
    opened = {episode.rule: episode for episode in base}
    out: list[Episode] = []
    for index, rule in enumerate(rule_set.rules):
        episode = opened.get(rule.id)
        if episode is None and not any(_seen_in(r, index, rule.id).present for r in reports):
            continue  # nothing to fold for this finding
        low = _low_is_worse(rule)
        for report in reports:
            seen = _seen_in(report, index, rule.id)
            point = Point(report.report, report.collected, report.shown, seen)
            closed, episode = advance(episode, point, rule.resolution, low_is_worse=low)
            if closed is not None:
                out.append(closed)
        if episode is not None:
            out.append(episode)
    return out


def _seen_in(report: ReportFacts, index: int, rule: str) -> Seen:
    """The finding ``rule`` (the ``index``-th of the rule set) in ``report``; a withdrawn
    report, or one read under another rule set without it, shows none (it neither extends
    nor closes an episode)."""
    if report.withdrawn:
        return _NOT_SEEN
    findings = report.findings
    if index < len(findings) and findings[index].rule == rule:
        return findings[index]
    return next((seen for seen in findings if seen.rule == rule), _NOT_SEEN)


def _low_is_worse(rule: object) -> bool:
    return not (isinstance(rule, ThresholdRule) and rule.kind == "above")


def _flags(
    state: PatientState, patient: str, episodes: list[Episode]
) -> tuple[tuple[FlagWrite, ...], tuple[FlagRecord, ...]]:
    """The Flags that changed, and the records of every Flag after this report."""
    before = {record.identifier: record for record in state.flags}
    writes: list[FlagWrite] = []
    records: list[FlagRecord] = []
    produced: set[str] = set()
    for episode in episodes:
        identifier = flag_identifier(patient, episode.rule, episode.opened_by)
        status = ACTIVE if episode.active else INACTIVE
        digest = _digest(status, episode)
        produced.add(identifier)
        records.append(FlagRecord(identifier, status, digest, episode))
        old = before.get(identifier)
        if old is None or old.digest != digest:
            writes.append(FlagWrite(identifier, status, episode))
    for record in state.flags:
        if record.identifier in produced:
            continue
        if record.status == RETRACTED or _before_horizon(record.episode, state.horizon):
            records.append(record)  # already withdrawn, or frozen: it stays as written
            continue
        writes.append(FlagWrite(record.identifier, RETRACTED, record.episode))
        records.append(
            FlagRecord(
                record.identifier, RETRACTED, _digest(RETRACTED, record.episode), record.episode
            )
        )
    return tuple(writes), _bounded(records)


def _before_horizon(episode: Episode, horizon: tuple[str, str]) -> bool:
    end = episode.end
    return end is not None and bool(horizon[0]) and (end.collected, end.report) <= horizon


def _bounded(records: list[FlagRecord]) -> tuple[FlagRecord, ...]:
    """Active Flags, and the latest :data:`CLOSED_FLAGS` others (by start)."""
    closed = sorted(
        (r for r in records if r.status != ACTIVE),
        key=lambda r: (r.episode.start.collected, r.identifier),
    )[-CLOSED_FLAGS:]
    keep = {r.identifier for r in closed}
    return tuple(r for r in records if r.status == ACTIVE or r.identifier in keep)


def _digest(status: str, episode: Episode) -> str:
    """Of everything a Flag shows (its references resolve to the same resources from any
    Bundle, so they are named by identifier here)."""
    latest, nadir, end = episode.latest, episode.nadir, episode.end
    shown = (
        status,
        episode.rule,
        episode.start.shown,
        end.shown if end else "",
        latest.report,
        latest.seen,
        nadir.shown,
        nadir.seen.value,
        nadir.seen.grade,
    )
    return hashlib.sha1(repr(shown).encode(), usedforsecurity=False).hexdigest()[:16]


def _prune(state: PatientState, rule_set: RuleSet) -> PatientState:
    """Reports beyond :data:`WINDOW` leave the window: they are folded into ``base`` (the
    open episodes at the new horizon) and their versions remembered."""
    excess = len(state.reports) - WINDOW
    if excess <= 0:
        return state
    leaving, staying = state.reports[:excess], state.reports[excess:]
    opened = {episode.rule: episode for episode in state.base}
    for index, rule in enumerate(rule_set.rules):
        episode = opened.pop(rule.id, None)
        for report in leaving:
            seen = _seen_in(report, index, rule.id)
            point = Point(report.report, report.collected, report.shown, seen)
            _, episode = advance(episode, point, rule.resolution, low_is_worse=_low_is_worse(rule))
        if episode is not None:
            opened[rule.id] = episode
    return replace(
        state,
        reports=staying,
        horizon=leaving[-1].key,
        base=tuple(opened[rule.id] for rule in rule_set.rules if rule.id in opened),
        versions=_remember(state.versions, tuple((r.report, r.version) for r in leaving)),
    )


def _remember(
    versions: tuple[tuple[str, Version], ...], new: tuple[tuple[str, Version], ...]
) -> tuple[tuple[str, Version], ...]:
    keys = {key for key, _ in new}
    kept = [item for item in versions if item[0] not in keys]
    return (*kept, *new)[-VERSIONS:]

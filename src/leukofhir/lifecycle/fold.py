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
3. **Flags.** A Flag whose content changed is written; an unchanged one is not (but a
   version applied again restates the Flags it is the latest word on, unchanged, so that
   its document holds on its own); a Flag written before that the fold no longer
   produces (its reports were corrected away, withdrawn, or a late report merged its
   episode into another) is written ``entered-in-error``: a Flag a clinician may have
   seen is withdrawn, never deleted.

The same set of report versions gives the same Flags whatever the order they came in.
Trend findings (rule kind ``fall``) are decided here, each report against the previous
value of its count in collection order (:mod:`leukofhir.lifecycle.trends`), so they too
depend only on the reports and their collection times.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import replace
from typing import NamedTuple

from leukofhir.emit.datatypes import uuid_value
from leukofhir.lifecycle.episodes import Episode, Point, advance
from leukofhir.lifecycle.facts import (
    NOT_EVALUATED,
    PRESENT,
    WITHDRAWN_STATUSES,
    ReportFacts,
    Result,
    Version,
)
from leukofhir.lifecycle.state import (
    VERSIONS,
    WINDOW,
    FlagRecord,
    PatientState,
    ReportRecord,
    record_of,
    results_of,
    seen_as,
)
from leukofhir.lifecycle.trends import latest_samples, trend_points
from leukofhir.rules import Rule, RuleSet, ThresholdRule, TrendRule

__all__ = ["ACTIVE", "INACTIVE", "RETRACTED", "FlagWrite", "Writes", "flag_identifier", "fold"]

ACTIVE = "active"
INACTIVE = "inactive"
RETRACTED = "entered-in-error"


class FlagWrite(NamedTuple):
    """A standing Flag to write (it is new or it changed); a withdrawn one (RETRACTED) is
    written with what names it only (its finding and start), without an episode."""

    identifier: str  # the uuid value of Flag.identifier
    status: str  # ACTIVE | INACTIVE | RETRACTED
    rule: str
    start: Point  # the report that opened the episode
    episode: Episode | None = None
    # a critical episode no CommunicationRequest was asked for yet (--notify-critical)
    notify: bool = False


class Writes(NamedTuple):
    """What one report version changes beyond its own resources."""

    superseded_by: Version | None = None  # an older version: write nothing of the report
    withdrawn: tuple[Result, ...] = ()  # results of the replaced version it no longer holds
    flags: tuple[FlagWrite, ...] = ()
    frozen: bool = False  # collected before the state's horizon: no Flag can change
    # the critical notifications (each named by the report its episode first rested on a
    # critical value in) that no Flag carries any more: their CommunicationRequest is
    # revoked (a correction removed the critical value, a late report moved the episode)
    revoked: tuple[str, ...] = ()


def flag_identifier(patient: str, rule: str, opened_by: str) -> str:
    """A standing Flag's identity: the patient, the finding and the report that opened it."""
    return uuid_value("Flag", patient, rule, opened_by)


def fold(state: PatientState, facts: ReportFacts, rule_set: RuleSet) -> tuple[Writes, PatientState]:
    applied = state.version_of(facts.report)
    if applied is not None and facts.version < applied:
        return Writes(superseded_by=applied), state
    state = _under(state, rule_set)
    prior = state.report(facts.report)
    withdrawn: tuple[Result, ...] = ()
    if prior is not None and prior.version != facts.version:
        kept = {result.identifier for result in facts.results}
        withdrawn = tuple(
            r
            for r in results_of(prior)
            if r.identifier not in kept and r.status not in WITHDRAWN_STATUSES
        )
    frozen = bool(state.horizon[0]) and facts.key <= state.horizon
    if prior is None and not frozen and (not state.reports or facts.key > state.reports[-1].key):
        record = record_of(facts, state.rules, state.analytes)
        state, flags, revoked = _append(state, record, facts.patient, rule_set)
        return Writes(None, withdrawn, flags, revoked=revoked), _prune(state, rule_set)
    reports = [r for r in state.reports if r.report != facts.report]
    versions = state.versions
    if frozen:
        versions = _remember(versions, ((facts.report, facts.version),))
    else:
        reports.append(record_of(facts, state.rules, state.analytes))
        reports.sort(key=_key)
    state = replace(state, reports=tuple(reports), versions=versions)
    episodes, tail = _episodes(state, rule_set)
    flags, records, revoked = _flags(state, facts.patient, episodes, complete=True)
    if prior is not None and prior.version == facts.version:
        flags = _restated(flags, episodes, facts)
    state = replace(state, tail=tail, flags=records)
    return Writes(None, withdrawn, flags, frozen, revoked), _prune(state, rule_set)


def _restated(
    flags: tuple[FlagWrite, ...], episodes: list[Episode], facts: ReportFacts
) -> tuple[FlagWrite, ...]:
    """A version applied before, again (the same file under another name, a re-sent
    message): its document restates the Flags it is the latest word on (the last report
    showing the finding, or the one that closed it), as they stand, so that it holds on its
    own.  Nothing on a server changes: they are what was written."""
    written = {write.identifier for write in flags}
    more = [
        FlagWrite(identifier, ACTIVE if e.active else INACTIVE, e.rule, e.start, e)
        for e in episodes
        if facts.report in (e.latest.report, e.end.report if e.end else "")
        and (identifier := flag_identifier(facts.patient, e.rule, e.opened_by)) not in written
    ]
    return (*flags, *more)


def _append(
    state: PatientState, record: ReportRecord, patient: str, rule_set: RuleSet
) -> tuple[PatientState, tuple[FlagWrite, ...], tuple[str, ...]]:
    """The common case, a report after every report of the window: each finding's open
    episode (``tail``) takes one step; nothing before it can change."""
    state = replace(state, reports=(*state.reports, record))
    opened = {episode.rule: episode for episode in state.tail}
    changed: list[Episode] = []
    tail: list[Episode] = []
    last = len(state.reports) - 1
    for index, rule in enumerate(rule_set.rules):
        episode = opened.get(rule.id)
        if episode is None and (record.letters[index] not in _OPENING or record.withdrawn):
            continue
        episode = _advance(state, (last, last + 1), index, rule, rule_set, episode, changed)
        if episode is not None:
            tail.append(episode)
            changed.append(episode)
    flags, records, revoked = _flags(state, patient, changed, complete=False)
    return replace(state, tail=tuple(tail), flags=records), flags, revoked


_OPENING = "PT"  # letters that may open an episode: present, or a trend still to decide


def _under(state: PatientState, rule_set: RuleSet) -> PatientState:
    """``state`` with its records' letters in the order of ``rule_set`` (a state written
    under another rule set: its findings missing here count as not evaluated), and their
    values in the order of the counts its trend rules read (a count it did not keep: none)."""
    rules, analytes = _order(rule_set)
    if state.rules == rules and state.analytes == analytes:
        return state
    where = {rule: i for i, rule in enumerate(state.rules)}
    slots = {analyte: i for i, analyte in enumerate(state.analytes)}

    def values(r: ReportRecord) -> tuple[tuple[str, str], ...]:
        moved = tuple(
            r.values[slots[a]] if a in slots and slots[a] < len(r.values) else ("", "")
            for a in analytes
        )
        return moved if any(v[0] for v in moved) else ()

    return replace(
        state,
        rules=rules,
        analytes=analytes,
        reports=tuple(
            replace(
                r,
                letters="".join(r.letters[where[x]] if x in where else "N" for x in rules),
                values=values(r),
            )
            for r in state.reports
        ),
        before=tuple(b for b in state.before if b.analyte in analytes),
    )


_orders: dict[int, tuple[RuleSet, tuple[str, ...], tuple[str, ...]]] = {}


def _order(rule_set: RuleSet) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The ids of ``rule_set``'s rules and the counts its trend rules read, in order (kept
    per rule set: every report asks)."""
    known = _orders.get(id(rule_set))
    if known is None or known[0] is not rule_set:
        rules = tuple(rule.id for rule in rule_set.rules)
        analytes = tuple(analyte.value for analyte in rule_set.trend_analytes)
        if len(_orders) >= 16:  # rule sets are few; a test may make many
            _orders.clear()
        known = _orders[id(rule_set)] = (rule_set, rules, analytes)
    return known[1], known[2]


def _key(report: ReportRecord) -> tuple[str, str]:
    return report.key


def _episodes(state: PatientState, rule_set: RuleSet) -> tuple[list[Episode], tuple[Episode, ...]]:
    """Every episode of the window (those open at the horizon carried on, then new ones),
    and the episodes still open after its last report."""
    opened = {episode.rule: episode for episode in state.base}
    out: list[Episode] = []
    tail: list[Episode] = []
    for index, rule in enumerate(rule_set.rules):
        episode = opened.get(rule.id)
        if episode is None and not any(
            r.letters[index] in _OPENING and not r.withdrawn for r in state.reports
        ):
            continue  # nothing to fold for this finding
        span = (0, len(state.reports))
        episode = _advance(state, span, index, rule, rule_set, episode, out)
        if episode is not None:
            out.append(episode)
            tail.append(episode)
    return out, tuple(tail)


def _advance(
    state: PatientState,
    span: tuple[int, int],
    index: int,
    rule: Rule,
    rule_set: RuleSet,
    episode: Episode | None,
    closed: list[Episode],
) -> Episode | None:
    """The reports ``state.reports[start:stop]`` folded into ``episode`` for the
    ``index``-th rule; the episodes they close go to ``closed``.  A withdrawn report shows
    no finding: it neither extends nor closes an episode."""
    low = _low_is_worse(rule)
    for point in _points(state, span, index, rule, rule_set):
        done, episode = advance(episode, point, rule.resolution, low_is_worse=low)
        if done is not None:
            closed.append(done)
    return episode


def _points(
    state: PatientState, span: tuple[int, int], index: int, rule: Rule, rule_set: RuleSet
) -> Iterator[Point]:
    """The ``index``-th finding in each report of the span; a trend rule's decided against
    the previous value of its count."""
    if isinstance(rule, TrendRule):
        yield from trend_points(state, span[0], span[1], index, rule, rule_set)
        return
    for report in state.reports[span[0] : span[1]]:
        seen = seen_as(rule.id, NOT_EVALUATED) if report.withdrawn else state.seen(report, index)
        yield Point(report.report, report.collected, report.shown, seen)


def _low_is_worse(rule: Rule) -> bool:
    return not (isinstance(rule, ThresholdRule) and rule.kind == "above")


def _flags(
    state: PatientState, patient: str, episodes: list[Episode], *, complete: bool
) -> tuple[tuple[FlagWrite, ...], tuple[FlagRecord, ...], tuple[str, ...]]:
    """The Flags of ``episodes`` that changed, the records of every Flag after this
    report, and the critical notifications no Flag carries any more (to revoke).
    ``complete``: ``episodes`` are all the window's, so a Flag written before and not
    among them is withdrawn; otherwise they are the ones that changed.

    A critical episode's notification is named by the report where it first rested on a
    critical value (:attr:`Episode.critical_from`): one per such report, asked for by the
    first Flag that carries it, kept while any Flag carries it (a late report that moves
    the episode's start keeps it when the critical report is the same), revoked when none
    does any more."""
    before = {record.identifier: record for record in state.flags}
    held = {record.notified for record in state.flags if record.notified}
    writes: list[FlagWrite] = []
    records: dict[str, FlagRecord] = {} if complete else dict(before)
    for episode in episodes:
        identifier = flag_identifier(patient, episode.rule, episode.opened_by)
        status = ACTIVE if episode.active else INACTIVE
        digest = _digest(status, episode)
        end = episode.end
        start = episode.start
        records[identifier] = FlagRecord(
            identifier,
            status,
            digest,
            episode.rule,
            Point(start.report, start.collected, start.shown, seen_as(episode.rule, PRESENT)),
            (end.collected, end.report) if end else None,
            episode.critical_from,
        )
        old = before.get(identifier)
        if old is None or old.digest != digest:
            notify = bool(episode.critical_from) and episode.critical_from not in held
            writes.append(
                FlagWrite(identifier, status, episode.rule, episode.start, episode, notify)
            )
    if complete:
        for record in _kept(list(state.flags), state.horizon):
            if record.identifier not in records:  # the fold no longer produces it
                writes.append(FlagWrite(record.identifier, RETRACTED, record.rule, record.start))
    still = {record.notified for record in records.values() if record.notified}
    revoked = tuple(sorted(held - still))
    return tuple(writes), _kept(list(records.values()), state.horizon), revoked


def _kept(records: list[FlagRecord], horizon: tuple[str, str]) -> tuple[FlagRecord, ...]:
    """The records a later report may still need: active Flags, and inactive ones that a
    report of the window closed (so at most a Flag per finding and report of the window).
    A withdrawn Flag is forgotten (produced again, it is written again), and so is one
    closed before the horizon (no report can change it any more)."""
    return tuple(
        r
        for r in records
        if r.status == ACTIVE
        or (r.status == INACTIVE and not (r.end is not None and horizon[0] and r.end <= horizon))
    )


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
    base = []
    for index, rule in enumerate(rule_set.rules):
        episode = _advance(state, (0, excess), index, rule, rule_set, opened.get(rule.id), [])
        if episode is not None:
            base.append(episode)
    horizon = leaving[-1].key
    return replace(
        state,
        reports=staying,
        before=latest_samples(state, leaving),
        horizon=horizon,
        base=tuple(base),
        flags=_kept(list(state.flags), horizon),
        versions=_remember(state.versions, tuple((r.report, r.version) for r in leaving)),
    )


def _remember(
    versions: tuple[tuple[str, Version], ...], new: tuple[tuple[str, Version], ...]
) -> tuple[tuple[str, Version], ...]:
    keys = {key for key, _ in new}
    kept = [item for item in versions if item[0] not in keys]
    return (*kept, *new)[-VERSIONS:]

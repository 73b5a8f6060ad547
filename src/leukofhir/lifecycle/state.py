"""One patient's lifecycle state: what the fold needs, bounded, and its compact JSON form.

* ``reports``: the newest version of each of the patient's latest reports, in fold order
  (collection time, then report identifier), at most :data:`WINDOW`;
* ``base``: the open episode of each finding at the ``horizon`` (the collection time of
  the last report that left the window): the fold starts there, so an episode may stay
  open for longer than the window;
* ``versions``: the newest version of reports that left the window, at most
  :data:`VERSIONS`, so that an old version arriving late never overwrites a newer one;
* ``flags``: the Flags written for the patient (active ones, and the latest
  :data:`CLOSED_FLAGS` others), with a digest of what was written, so that an unchanged
  Flag is not written again and a Flag the fold no longer produces is withdrawn.

A report collected at or before the horizon can no longer change an episode (its
results are still written when it is the newest version); the outcome says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from leukofhir.lifecycle.episodes import Episode, Point
from leukofhir.lifecycle.facts import ReportFacts, Result, Seen, Version

__all__ = [
    "CLOSED_FLAGS",
    "VERSIONS",
    "WINDOW",
    "FlagRecord",
    "PatientState",
    "decode_state",
    "encode_state",
]

WINDOW = 32  # reports kept whole per patient
VERSIONS = 256  # versions kept of reports that left the window
CLOSED_FLAGS = 16  # inactive or withdrawn Flags remembered per patient
FORMAT = 1


@dataclass(frozen=True, slots=True)
class FlagRecord:
    """A Flag as last written: its identifier, status, digest and the episode it showed."""

    identifier: str  # the uuid value of Flag.identifier
    status: str  # active | inactive | entered-in-error
    digest: str  # of what was written (unchanged → not written again)
    episode: Episode


@dataclass(frozen=True, slots=True)
class PatientState:
    reports: tuple[ReportFacts, ...] = ()
    horizon: tuple[str, str] = ("", "")  # fold key of the last report that left the window
    base: tuple[Episode, ...] = ()
    versions: tuple[tuple[str, Version], ...] = ()
    flags: tuple[FlagRecord, ...] = field(default=())

    def report(self, key: str) -> ReportFacts | None:
        return next((r for r in self.reports if r.report == key), None)

    def version_of(self, key: str) -> Version | None:
        """The newest version applied of report ``key`` (in the window or before it)."""
        record = self.report(key)
        if record is not None:
            return record.version
        return next((v for k, v in self.versions if k == key), None)


# -- JSON ------------------------------------------------------------------------------------
# Positional lists, not objects: a state is read and written once per report, and its size
# is what a store holds per patient.


def encode_state(state: PatientState) -> bytes:
    return orjson.dumps(
        [
            FORMAT,
            [_report(r) for r in state.reports],
            list(state.horizon),
            [_episode(e) for e in state.base],
            [[k, _version(v)] for k, v in state.versions],
            [[f.identifier, f.status, f.digest, _episode(f.episode)] for f in state.flags],
        ]
    )


def decode_state(data: bytes) -> PatientState:
    fmt, reports, horizon, base, versions, flags = orjson.loads(data)
    if fmt != FORMAT:
        raise ValueError(f"lifecycle state format {fmt} is not {FORMAT}")
    return PatientState(
        reports=tuple(_read_report(r) for r in reports),
        horizon=(horizon[0], horizon[1]),
        base=tuple(_read_episode(e) for e in base),
        versions=tuple((k, Version(*v)) for k, v in versions),
        flags=tuple(
            FlagRecord(identifier, status, digest, _read_episode(e))
            for identifier, status, digest, e in flags
        ),
    )


def _version(v: Version) -> list[Any]:
    return [v.changed, v.rank, v.control_id, v.digest]


def _seen(s: Seen) -> list[Any]:
    if s.state != "present":
        return [s.rule, s.state]
    return [
        s.rule,
        s.state,
        s.grade,
        s.priority,
        s.text,
        s.number,
        s.comparator,
        s.unit,
        list(s.evidence),
    ]


def _read_seen(item: list[Any]) -> Seen:
    if len(item) == 2:
        return Seen(item[0], item[1])
    rule, state, grade, priority, text, number, comparator, unit, evidence = item
    return Seen(rule, state, grade, priority, text, number, comparator, unit, tuple(evidence))


def _report(r: ReportFacts) -> list[Any]:
    return [
        r.patient,
        r.report,
        _version(r.version),
        r.collected,
        r.shown,
        r.status,
        [_seen(s) for s in r.findings],
        [[x.identifier, x.code, x.status] for x in r.results],
    ]


def _read_report(item: list[Any]) -> ReportFacts:
    patient, report, version, collected, shown, status, findings, results = item
    return ReportFacts(
        patient,
        report,
        Version(*version),
        collected,
        shown,
        status,
        tuple(_read_seen(s) for s in findings),
        tuple(Result(*x) for x in results),
    )


def _point(p: Point) -> list[Any]:
    return [p.report, p.collected, p.shown, _seen(p.seen)]


def _read_point(item: list[Any]) -> Point:
    return Point(item[0], item[1], item[2], _read_seen(item[3]))


def _episode(e: Episode) -> list[Any]:
    return [
        e.rule,
        e.opened_by,
        _point(e.start),
        _point(e.latest),
        _point(e.nadir),
        _point(e.end) if e.end else None,
        [_point(p) for p in e.pending],
    ]


def _read_episode(item: list[Any]) -> Episode:
    rule, opened_by, start, latest, nadir, end, pending = item
    return Episode(
        rule,
        opened_by,
        _read_point(start),
        _read_point(latest),
        _read_point(nadir),
        _read_point(end) if end else None,
        tuple(_read_point(p) for p in pending),
    )

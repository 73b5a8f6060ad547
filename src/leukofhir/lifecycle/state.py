"""One patient's lifecycle state: what the fold needs, bounded, and its compact JSON form.

* ``reports``: the newest version of each of the patient's latest reports, in fold order
  (collection time, then report identifier), at most :data:`WINDOW`, each a small
  :class:`ReportRecord` (a letter per finding, the details of the present ones);
* ``base``: the open episode of each finding at the ``horizon`` (the fold key of the last
  report that left the window): the fold starts there, so an episode may stay open for
  longer than the window;
* ``versions``: the newest version of reports that left the window, at most
  :data:`VERSIONS`, so that an old version arriving late never overwrites a newer one;
* ``flags``: the Flags written for the patient that a report could still change (active
  ones, and inactive ones a report of the window closed), with a digest of what was
  written, so that an unchanged Flag is not written again and a Flag the fold no longer
  produces is withdrawn;
* for the trend rules: each report's values of the counts they read (``analytes``; a
  value and its Observation, a few bytes), and ``before``, the latest such value of a
  report that left the window, so that the first report of the window still has its
  previous value.

A report collected at or before the horizon can no longer change an episode (its
results are still written when it is the newest version); the outcome says so.
The state holds no patient identifier: a store keys it by a hash of the patient's.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

import orjson

from leukofhir.lifecycle.episodes import Episode, Point
from leukofhir.lifecycle.facts import (
    ABSENT,
    NOT_EVALUATED,
    PRESENT,
    TREND,
    ReportFacts,
    Result,
    Sample,
    Seen,
    Version,
)

__all__ = [
    "VERSIONS",
    "WINDOW",
    "FlagRecord",
    "PatientState",
    "RecordsJson",
    "ReportRecord",
    "decode_state",
    "encode_records",
    "encode_state",
    "record_of",
]

WINDOW = 32  # reports kept per patient
VERSIONS = 64  # versions kept of reports that left the window
FORMAT = 2  # 2: trend values, ``before``, critical findings, an episode's critical report
# (a Flag's critical notification is an optional 7th item of its list: format 2 still)
_READABLE = frozenset({1, 2})  # a format-1 state reads as one without trend values

_LETTER = {PRESENT: "P", ABSENT: "A", NOT_EVALUATED: "N", TREND: "T"}
_NO_VALUE = ("", "")
_STATE = {letter: state for state, letter in _LETTER.items()}


@cache
def seen_as(rule: str, state: str) -> Seen:
    """The one Seen of an absent or unevaluated finding (they carry nothing else)."""
    return Seen(rule, state)


@dataclass(frozen=True, slots=True)
class ReportRecord:
    """A report version as the state keeps it."""

    report: str  # "system|value" of its DiagnosticReport identifier
    version: Version
    collected: str  # UTC instant: the fold's order
    shown: str  # the collection time as sent
    withdrawn: bool  # cancelled, entered in error, or every result is
    letters: str  # P / A / N per rule of PatientState.rules
    present: tuple[Seen, ...]  # the present findings, in rule order
    results: str  # its result resources, packed (see :func:`results_of`)
    # per count of PatientState.analytes: (value, Observation identifier) or ("", "")
    values: tuple[tuple[str, str], ...] = ()

    def sample(self, slot: int, analyte: str) -> Sample | None:
        """Its value of the ``slot``-th count, as a trend rule reads it."""
        if slot >= len(self.values) or not (value := self.values[slot])[0]:
            return None
        return Sample(analyte, value[0], self.collected, self.shown, self.report, value[1])

    @property
    def key(self) -> tuple[str, str]:
        return self.collected, self.report


@dataclass(frozen=True, slots=True)
class FlagRecord:
    """A Flag as last written: enough to know whether it changed, to withdraw it, and to
    forget it once no report can change it any more."""

    identifier: str  # the uuid value of Flag.identifier
    status: str  # active | inactive | entered-in-error
    digest: str  # of what was written (unchanged → not written again)
    rule: str
    start: Point  # the report that opened the episode
    end: tuple[str, str] | None = None  # fold key of the report that closed it
    # the critical notification it carries: the report its episode first rested on a
    # critical value in ("" : none; see lifecycle.fold._flags)
    notified: str = ""


@dataclass(frozen=True, slots=True)
class PatientState:
    rules: tuple[str, ...] = ()  # the rule ids ReportRecord.letters follow
    reports: tuple[ReportRecord, ...] = ()
    horizon: tuple[str, str] = ("", "")
    base: tuple[Episode, ...] = ()
    versions: tuple[tuple[str, Version], ...] = ()
    flags: tuple[FlagRecord, ...] = ()
    tail: tuple[Episode, ...] = ()  # the episodes open after the last report (derived, kept)
    analytes: tuple[str, ...] = ()  # the counts ReportRecord.values follow
    before: tuple[Sample, ...] = ()  # per count, the latest value that left the window

    def report(self, key: str) -> ReportRecord | None:
        return next((r for r in self.reports if r.report == key), None)

    def version_of(self, key: str) -> Version | None:
        """The newest version applied of report ``key`` (in the window or before it)."""
        record = self.report(key)
        if record is not None:
            return record.version
        return next((v for k, v in self.versions if k == key), None)

    def seen(self, record: ReportRecord, index: int) -> Seen:
        """The ``index``-th finding of :attr:`rules` in ``record``."""
        letter = record.letters[index]
        rule = self.rules[index]
        if letter != "P":
            return seen_as(rule, _STATE[letter])
        return next(seen for seen in record.present if seen.rule == rule)


def record_of(
    facts: ReportFacts, rules: tuple[str, ...], analytes: tuple[str, ...] = ()
) -> ReportRecord:
    """``facts`` as the state keeps them, their findings in the order of ``rules``, their
    values in the order of ``analytes``."""
    found = {seen.rule: seen for seen in facts.findings}
    letters = "".join(_LETTER[found[r].state] if r in found else "N" for r in rules)
    values = facts.values[: len(analytes)]
    values = (*values, *(_NO_VALUE,) * (len(analytes) - len(values)))
    return ReportRecord(
        facts.report,
        facts.version,
        facts.collected,
        facts.shown,
        facts.withdrawn,
        letters,
        tuple(seen for seen in facts.findings if seen.state == PRESENT),
        _pack(facts.results),
        values if any(v[0] for v in values) else (),
    )


def results_of(record: ReportRecord) -> tuple[Result, ...]:
    """The result resources of a record (unpacked only when a newer version arrives)."""
    return _unpack(record.results)


def _unpack(packed: str) -> tuple[Result, ...]:
    if not packed:
        return ()
    id_prefix, code_prefix, status, *items = packed.split("\n")
    out = []
    for item in items:
        suffix, code, own = [*item.split("\t"), "", ""][:3]
        out.append(Result(id_prefix + suffix, code_prefix + (code or suffix), own or status))
    return tuple(out)


def _pack(results: tuple[Result, ...]) -> str:
    """Identifiers and codes share their common prefixes; a code equal to the end of its
    identifier, and the common status, are not repeated.  Tabs and newlines cannot occur
    in FHIR identifiers and codes (the emitter strips control characters)."""
    if not results:
        return ""
    ids, codes = [r.identifier for r in results], [r.code for r in results]
    id_prefix, code_prefix = _prefix(ids), _prefix(codes)
    statuses = [r.status for r in results]
    common = max(set(statuses), key=statuses.count)
    items = []
    for r in results:
        suffix, code = r.identifier[len(id_prefix) :], r.code[len(code_prefix) :]
        fields = [suffix, "" if code == suffix else code, "" if r.status == common else r.status]
        items.append("\t".join(fields).rstrip("\t"))
    return "\n".join([id_prefix, code_prefix, common, *items])


def _prefix(texts: list[str]) -> str:
    # a prefix of characters, not of path components: identifiers share "system|order/"
    return os.path.commonprefix(texts) if len(texts) > 1 else ""  # noqa: RUF071


# -- JSON ------------------------------------------------------------------------------------
# Positional lists, not objects: a state is read and written once per report, and its size
# is what a store holds per patient.


# What :func:`encode_records` knows of a patient's records as last encoded: their JSON, by
# the record object (each entry holds its record, so that an id is never taken for another)
RecordsJson = dict[int, tuple[ReportRecord, orjson.Fragment]]


def encode_state(state: PatientState) -> bytes:
    return encode_records(state, {})[0]


def encode_records(state: PatientState, known: RecordsJson) -> tuple[bytes, RecordsJson]:
    """:func:`encode_state`, taking the JSON of the records ``known`` from an earlier
    encoding of the patient's state (a record stays in the window for up to WINDOW more
    reports, each of which encodes the state again); and the JSON of this state's records."""
    records: RecordsJson = {}
    for r in state.reports:
        hit = known.get(id(r))
        if hit is None or hit[0] is not r:
            hit = (r, orjson.Fragment(orjson.dumps(_record(r))))
        records[id(r)] = hit
    data = orjson.dumps(
        [
            FORMAT,
            list(state.rules),
            [records[id(r)][1] for r in state.reports],
            list(state.horizon),
            [_episode(e) for e in state.base],
            [[k, _version(v)] for k, v in state.versions],
            [
                [f.identifier, f.status, f.digest, f.rule, _when(f.start), f.end]
                + ([f.notified] if f.notified else [])
                for f in state.flags
            ],
            [_episode(e) for e in state.tail],
            list(state.analytes),
            [
                [b.analyte, b.value, b.collected, b.shown, b.report, b.observation]
                for b in state.before
            ],
        ]
    )
    return data, records


def _record(r: ReportRecord) -> list[Any]:
    where = _positions(r.results) if r.values or r.present else {}
    out = [
        r.report,
        _version(r.version),
        r.collected,
        r.shown,
        r.withdrawn,
        r.letters,
        [_detail(seen, where) for seen in r.present],
        r.results,
    ]
    if r.values:  # the Observations as positions among the record's results
        out.append([[value, where.get(key, key)] if value else "" for value, key in r.values])
    return out


def _read_record(rules: list[str], item: list[Any]) -> ReportRecord:
    report, version, collected, shown, withdrawn, letters, present, results, *more = item
    values: tuple[tuple[str, str], ...] = ()
    if more:
        keys = _identifiers(results)
        values = tuple(
            (v[0], keys[v[1]] if isinstance(v[1], int) else v[1]) if v else _NO_VALUE
            for v in more[0]
        )
    return ReportRecord(
        report,
        Version(*version),
        collected,
        shown,
        withdrawn,
        letters,
        _read_present(rules, letters, present, results),
        results,
        values,
    )


def decode_state(data: bytes) -> PatientState:
    fmt, rules, reports, horizon, base, versions, flags, tail, *trends = orjson.loads(data)
    if fmt not in _READABLE:
        raise ValueError(f"lifecycle state format {fmt} is not one of {sorted(_READABLE)}")
    analytes, before = trends if trends else ([], [])
    return PatientState(
        rules=tuple(rules),
        reports=tuple(_read_record(rules, item) for item in reports),
        horizon=(horizon[0], horizon[1]),
        base=tuple(_read_episode(e) for e in base),
        versions=tuple((k, Version(*v)) for k, v in versions),
        flags=tuple(
            FlagRecord(
                identifier,
                status,
                digest,
                rule,
                _read_when(rule, start),
                end and tuple(end),
                notified[0] if notified else "",
            )
            for identifier, status, digest, rule, start, end, *notified in flags
        ),
        tail=tuple(_read_episode(e) for e in tail),
        analytes=tuple(analytes),
        before=tuple(Sample(*b) for b in before),
    )


def _identifiers(packed: str) -> list[str]:
    """The identifiers of a record's results, in order (what :func:`_unpack` gives, without
    the rest): the state names an evidence or a value's Observation by its position."""
    if not packed:
        return []
    id_prefix, _codes, _status, *items = packed.split("\n")
    return [id_prefix + item.partition("\t")[0] for item in items]


def _positions(packed: str) -> dict[str, int]:
    return {identifier: n for n, identifier in enumerate(_identifiers(packed))}


def _read_present(
    rules: list[str], letters: str, present: list[Any], results: str
) -> tuple[Seen, ...]:
    if not present:
        return ()
    named = [rule for rule, letter in zip(rules, letters, strict=True) if letter == "P"]
    keys = _identifiers(results)
    return tuple(_read_detail(rule, item, keys) for rule, item in zip(named, present, strict=True))


def _version(v: Version) -> list[Any]:
    return [v.changed, v.rank, v.control_id, v.digest]


def _detail(s: Seen, where: dict[str, int] | None = None) -> list[Any]:
    evidence = [where.get(key, key) for key in s.evidence] if where else list(s.evidence)
    detail = [s.grade, s.priority, s.text, s.number, s.comparator, s.unit, evidence]
    return [*detail, 1] if s.critical else detail


def _read_detail(rule: str, item: list[Any], keys: Sequence[str] = ()) -> Seen:
    grade, priority, text, number, comparator, unit, evidence, *critical = item
    named = tuple(keys[e] if isinstance(e, int) else e for e in evidence)
    return Seen(
        rule, PRESENT, grade, priority, text, number, comparator, unit, named, bool(critical)
    )


def _when(p: Point) -> list[str]:
    """Where a Flag started: its report and time (what a withdrawn Flag shows)."""
    return [p.report, p.collected, p.shown]


def _read_when(rule: str, item: list[str]) -> Point:
    return Point(item[0], item[1], item[2], seen_as(rule, PRESENT))


def _point(p: Point) -> list[Any]:
    seen = p.seen
    detail = _detail(seen) if seen.state == PRESENT else _LETTER[seen.state]
    return [p.report, p.collected, p.shown, seen.rule, detail]


def _read_point(item: list[Any]) -> Point:
    report, collected, shown, rule, detail = item
    seen = seen_as(rule, _STATE[detail]) if isinstance(detail, str) else _read_detail(rule, detail)
    return Point(report, collected, shown, seen)


def _episode(e: Episode) -> list[Any]:
    out = [
        e.rule,
        e.opened_by,
        _point(e.start),
        _point(e.latest),
        _point(e.nadir),
        _point(e.end) if e.end else None,
        [_point(p) for p in e.pending],
    ]
    return [*out, e.critical_from] if e.critical_from else out


def _read_episode(item: list[Any]) -> Episode:
    rule, opened_by, start, latest, nadir, end, pending, *critical_from = item
    return Episode(
        rule,
        opened_by,
        _read_point(start),
        _read_point(latest),
        _read_point(nadir),
        _read_point(end) if end else None,
        tuple(_read_point(p) for p in pending),
        critical_from[0] if critical_from else "",
    )

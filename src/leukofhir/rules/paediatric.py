"""The paediatric profile: age bands and the limits each uses (``data/paediatric-v1.toml``).

A band holds, per finding of the rule set it evaluates, a limit ("below" for a low count,
"above" for a high one) with its sources and the source rows it was read from; its
reference intervals (WBC, ANC, ALC) for the interpretation; and, per finding it does not
evaluate, why.  :meth:`PaediatricProfile.band` finds a child's band from their
:class:`~leukofhir.rules.age.Age`; None means an adult (the rule file's limits).

The file is checked against the rule set when it is read: every limit names a finding of
the rule set of the same kind, every source is listed, the bands start at day 0 and
follow each other in age order.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from itertools import pairwise
from pathlib import Path
from types import MappingProxyType
from typing import Any, NamedTuple

from leukofhir import packaged_toml
from leukofhir.model import Analyte, Measure
from leukofhir.rules.age import Age
from leukofhir.rules.load import Reader
from leukofhir.rules.ruleset import Interval, RuleSet, Source, ThresholdRule, interval_key

__all__ = [
    "PACKAGED_PAEDIATRIC_FILE",
    "AgeBand",
    "AgeEdge",
    "BandLimit",
    "PaediatricProfile",
    "load_paediatric",
]

PACKAGED_PAEDIATRIC_FILE = "paediatric-v1.toml"
_ANALYTES = {analyte.value: analyte for analyte in Analyte}


class AgeEdge(NamedTuple):
    """An age a band starts at: ``days`` days, ``months`` completed months (years are
    written as months), or both (reached when both are: 1-3 months starts at one completed
    month, and never before day 29, so that 8-28 days keeps every one of its days)."""

    months: int = 0
    days: int = 0

    def reached(self, age: Age) -> bool:
        return age.months >= self.months and age.days >= self.days


class BandLimit(NamedTuple):
    rule: str
    kind: str  # "below" | "above"
    limit: Decimal
    sources: tuple[str, ...]
    rows: str  # the source rows it was read from


class AgeBand(NamedTuple):
    id: str
    name: str  # "3-12 months"
    start: AgeEdge
    limits: Mapping[str, BandLimit]  # by rule id
    intervals: Mapping[tuple[str, str], Interval]  # by interval_key(analyte, measure)
    missing: Mapping[str, str]  # rule id → why this band does not evaluate it


class PaediatricProfile(NamedTuple):
    id: str
    version: str
    title: str
    adult_from: AgeEdge
    bands: tuple[AgeBand, ...]
    policy: Mapping[str, str]
    sources: tuple[Source, ...] = ()
    origin: str = ""

    @property
    def label(self) -> str:
        return f"{self.id} {self.version}"

    def band(self, age: Age) -> AgeBand | None:
        """The band of a child of ``age``; None from :attr:`adult_from` on."""
        if self.adult_from.reached(age):
            return None
        found = self.bands[0]
        for band in self.bands[1:]:
            if not band.start.reached(age):
                break
            found = band
        return found

    def why_missing(self, band: AgeBand, rule_id: str) -> str:
        """Why ``band`` does not evaluate ``rule_id``: its own reason, else the policy's."""
        return band.missing.get(rule_id) or self.policy.get(
            "no_limit", "the paediatric profile gives no limit for this finding"
        )


def load_paediatric(rule_set: RuleSet, path: Path | None = None) -> PaediatricProfile:
    """The profile of ``path``, or the packaged ``paediatric-v1.toml``, checked against
    ``rule_set``; raises :class:`ConfigError` (locating the key) on any mistake."""
    if path is None:
        return _packaged(rule_set)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise _Reader(str(path)).fail("file", f"cannot be read ({exc})") from None
    return _parse(text, str(path), rule_set, origin=str(path))


_CACHE: dict[int, tuple[RuleSet, PaediatricProfile]] = {}


def _packaged(rule_set: RuleSet) -> PaediatricProfile:
    """Read once per rule set (the packaged rule set is itself read once)."""
    found = _CACHE.get(id(rule_set))
    if found is None or found[0] is not rule_set:
        data = packaged_toml(PACKAGED_PAEDIATRIC_FILE)
        found = (rule_set, _parse(data, PACKAGED_PAEDIATRIC_FILE, rule_set))
        _CACHE[id(rule_set)] = found
    return found[1]


class _Reader(Reader):
    what = "paediatric profile"

    def edge(self, table: dict[str, Any], key: str, where: str) -> AgeEdge:
        raw = self.get(table, key, where, dict)
        ok = all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in raw.values())
        if ok and set(raw) == {"months", "days"}:
            return AgeEdge(months=raw["months"], days=raw["days"])
        if len(raw) != 1 or not ok:
            raise self.fail(
                f"{where}.{key}",
                "must be one of {days = N}, {months = N}, {years = N}, {months = N, days = N}",
            )
        unit, number = next(iter(raw.items()))
        if unit == "days":
            return AgeEdge(days=number)
        if unit in ("months", "years"):
            return AgeEdge(months=number * (12 if unit == "years" else 1))
        raise self.fail(f"{where}.{key}", f"unknown unit {unit!r}")


def _parse(
    text: str | dict[str, Any], name: str, rule_set: RuleSet, *, origin: str = ""
) -> PaediatricProfile:
    """The profile of ``text``, or of its TOML already read (the packaged file)."""
    r = _Reader(name)
    data = r.toml(text) if isinstance(text, str) else text
    sources = r.sources(data)
    known = {source.id for source in sources}
    bands = tuple(
        _band(r, table, f"bands[{i}]", rule_set, known)
        for i, table in enumerate(r.get(data, "bands", "", list))
    )
    if not bands or bands[0].start != AgeEdge(days=0):
        raise r.fail("bands[0].from", "the first band must start at {days = 0}")
    adult = r.edge(data, "adult_from", "")
    starts = [band.start for band in bands] + [adult]
    for i, (a, b) in enumerate(pairwise(starts)):
        if not _before(a, b):
            raise r.fail(f"bands[{i + 1}].from", "bands must follow each other in age order")
    policy = r.get(data, "policy", "", dict)
    return PaediatricProfile(
        id=r.get(data, "id", "", str),
        version=r.get(data, "version", "", str),
        title=str(data.get("title", "")),
        adult_from=adult,
        bands=bands,
        policy=MappingProxyType({str(k): str(v) for k, v in policy.items()}),
        sources=sources,
        origin=origin,
    )


def _before(a: AgeEdge, b: AgeEdge) -> bool:
    """Does edge ``a`` come before ``b`` at every birth date (a month has 28 to 31 days)?"""
    if a.months and b.months:
        return a.months < b.months
    if not a.months and not b.months:
        return a.days < b.days
    if not a.months:
        return a.days < 28 * b.months
    return 31 * a.months < b.days


def _band(
    r: _Reader, table: dict[str, Any], where: str, rule_set: RuleSet, known: set[str]
) -> AgeBand:
    limits: dict[str, BandLimit] = {}
    for j, item in enumerate(r.get(table, "limits", where, list)):
        at = f"{where}.limits[{j}]"
        rule_id = r.get(item, "rule", at, str)
        rule = rule_set.rule(rule_id)
        kinds = [k for k in ("below", "above") if k in item]
        if not isinstance(rule, ThresholdRule) or kinds != [rule.kind]:
            raise r.fail(
                f"{at}.rule",
                f"{rule_id!r} must be a 'below' or 'above' finding of the rule set,"
                " with a limit of the same kind",
            )
        sources = tuple(r.get(item, "sources", at, list))
        if not sources or not set(sources) <= known:
            raise r.fail(f"{at}.sources", f"unknown or no sources {sorted(set(sources) - known)}")
        if rule_id in limits:
            raise r.fail(f"{at}.rule", f"{rule_id!r} has two limits in this band")
        limits[rule_id] = BandLimit(
            rule_id, kinds[0], r.decimal(item, kinds[0], at), sources, r.get(item, "rows", at, str)
        )
    intervals: dict[tuple[str, str], Interval] = {}
    for j, item in enumerate(r.get(table, "intervals", where, list)):
        at = f"{where}.intervals[{j}]"
        analyte = _ANALYTES.get(r.get(item, "analyte", at, str))
        if analyte is None:
            raise r.fail(f"{at}.analyte", "unknown analyte")
        if r.get(item, "source", at, str) not in known:
            raise r.fail(f"{at}.source", "unknown source")
        interval = Interval(
            analyte,
            Measure.COUNT,
            r.decimal(item, "low", at),
            r.decimal(item, "high", at),
            "10*9/L",
        )
        if interval.low > interval.high:
            raise r.fail(at, "low is above high")
        intervals[interval_key(analyte, Measure.COUNT)] = interval
    missing = table.get("missing", {})
    if not isinstance(missing, dict) or not all(isinstance(v, str) for v in missing.values()):
        raise r.fail(f"{where}.missing", "must be a table of reasons")
    if unknown := set(missing) - {rule.id for rule in rule_set.rules}:
        raise r.fail(f"{where}.missing", f"unknown findings {sorted(unknown)}")
    if both := set(missing) & set(limits):
        raise r.fail(f"{where}.missing", f"{sorted(both)} have a limit in this band")
    return AgeBand(
        id=r.get(table, "id", where, str),
        name=r.get(table, "name", where, str),
        start=r.edge(table, "from", where),
        limits=MappingProxyType(limits),
        intervals=MappingProxyType(intervals),
        missing=MappingProxyType(dict(missing)),
    )

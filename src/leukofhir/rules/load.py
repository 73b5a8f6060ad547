"""Reading and checking a rule file (see :mod:`leukofhir.rules.ruleset` for what it holds)."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from functools import cache
from pathlib import Path
from types import MappingProxyType
from typing import Any

from leukofhir import packaged_toml
from leukofhir.errors import ConfigError, ErrorCode, Location, error
from leukofhir.model import SNOMED, Analyte, Coding, Measure
from leukofhir.rules.ruleset import (
    PRIORITIES,
    Band,
    CriticalLimit,
    Deviation,
    Grade,
    Interval,
    PancytopeniaRule,
    PatientLimitCode,
    Profile,
    Resolution,
    Rule,
    RuleSet,
    Source,
    Texts,
    ThresholdRule,
    TrendRule,
    interval_key,
)
from leukofhir.terminology.checkdigits import is_sctid

__all__ = ["PACKAGED_RULE_FILE", "Reader", "load_rule_set", "read_intervals"]

PACKAGED_RULE_FILE = "leukopenia-v1.toml"
_ANALYTES = {analyte.value: analyte for analyte in Analyte}
_MEASURES = {measure.value: measure for measure in Measure}
_Table = dict[str, Any]


class Reader:
    """Typed access to the parsed TOML of a data file (``what``: "rule file", "paediatric
    profile"), raising a located ConfigError on any mistake."""

    what = "rule file"

    def __init__(self, name: str) -> None:
        self.name = name

    def fail(self, where: str, message: str) -> ConfigError:
        issue = error(
            ErrorCode.DATA_TYPE,
            f"{self.what} {self.name}: {where}: {message}",
            Location(expression=where),
            fhir_type="invalid",
        )
        return ConfigError(issue)

    def toml(self, text: str) -> _Table:
        import tomllib  # a user's file (the packaged ones: packaged_toml)

        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise self.fail("file", f"is not valid TOML ({exc})") from None

    def sources(self, data: _Table) -> tuple[Source, ...]:
        """The file's ``[[sources]]``: id, citation and an optional url each."""
        return tuple(
            Source(
                self.text(s, "id", f"sources[{i}]"),
                self.text(s, "citation", f"sources[{i}]"),
                self.text(s, "url", f"sources[{i}]", ""),
            )
            for i, s in enumerate(self.tables(data, "sources", ""))
        )

    def get(self, table: _Table, key: str, where: str, kind: type, default: Any = None) -> Any:
        value = table.get(key, default)
        if value is None:
            raise self.fail(f"{where}.{key}".lstrip("."), "is missing")
        # a TOML boolean is a Python int too: accept it only where a bool is asked for
        if not isinstance(value, kind) or isinstance(value, bool) is not (kind is bool):
            raise self.fail(f"{where}.{key}".lstrip("."), f"must be a {kind.__name__}")
        return value

    def text(self, table: _Table, key: str, where: str, default: str | None = None) -> str:
        value: str = self.get(table, key, where, str, default)
        return value

    def texts(self, table: _Table, key: str, where: str) -> tuple[str, ...]:
        items = self.get(table, key, where, list, [])
        if not all(isinstance(item, str) and item for item in items):
            raise self.fail(f"{where}.{key}", "must be a list of non-empty strings")
        return tuple(items)

    def tables(self, table: _Table, key: str, where: str) -> list[_Table]:
        items = self.get(table, key, where, list, [])
        if not all(isinstance(item, dict) for item in items):
            raise self.fail(f"{where}.{key}".lstrip("."), "must be a list of tables")
        return list(items)

    def decimal(self, table: _Table, key: str, where: str) -> Decimal:
        raw = self.text(table, key, where)
        try:
            number = Decimal(raw)
        except InvalidOperation:
            raise self.fail(f"{where}.{key}", f"{raw!r} is not a number") from None
        if not number.is_finite() or number < 0:
            raise self.fail(f"{where}.{key}", f"{raw!r} is not a finite, non-negative number")
        return number

    def analyte(self, table: _Table, where: str) -> Analyte:
        name = self.text(table, "analyte", where)
        if name not in _ANALYTES:
            raise self.fail(f"{where}.analyte", f"unknown analyte {name!r}")
        return _ANALYTES[name]

    def measure(self, table: _Table, where: str) -> Measure:
        name = self.text(table, "measure", where, "count")
        if name not in _MEASURES:
            raise self.fail(f"{where}.measure", f"unknown measure {name!r}")
        return _MEASURES[name]

    def coding(self, table: _Table, where: str) -> Coding:
        raw = self.get(table, "code", where, dict)
        at = f"{where}.code"
        coding = Coding(
            self.text(raw, "code", at), self.text(raw, "system", at), self.text(raw, "display", at)
        )
        if coding.system == SNOMED and not is_sctid(coding.code):
            raise self.fail(at, f"{coding.code!r} fails the SNOMED CT Verhoeff check")
        if not coding.system.startswith(("http://", "https://")) or not coding.code:
            raise self.fail(at, "needs a code and a canonical URL system")
        return coding

    def priority(self, table: _Table, key: str, where: str, default: str | None = None) -> str:
        value = self.text(table, key, where, default)
        if value not in PRIORITIES:
            raise self.fail(f"{where}.{key}", f"{value!r} is not one of {sorted(PRIORITIES)}")
        return value


def load_rule_set(path: Path | None = None) -> RuleSet:
    """The rule set of ``path``, or the packaged ``leukopenia-v1.toml`` (read once)."""
    if path is None:
        return _packaged()
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise Reader(str(path)).fail("file", f"cannot be read ({exc})") from None
    return _parse(text, str(path), origin=str(path))


@cache
def _packaged() -> RuleSet:
    return _parse(packaged_toml(PACKAGED_RULE_FILE), PACKAGED_RULE_FILE, origin="")


def _parse(text: str | _Table, name: str, *, origin: str) -> RuleSet:
    """The rule set of ``text``, or of its TOML already read (the packaged file)."""
    r = Reader(name)
    data = r.toml(text) if isinstance(text, str) else text
    sources = r.sources(data)
    source_ids = {source.id for source in sources}
    interpretations = {
        str(code): r.text(data["interpretations"], str(code), "interpretations")
        for code in r.get(data, "interpretations", "", dict)
    }
    if missing := {"L", "N", "H", "LL"} - set(interpretations):
        raise r.fail("interpretations", f"needs the codes {sorted(missing)}")
    priorities = r.get(data, "priorities", "", dict)
    grade_priority = {
        int(grade): r.priority(priorities["grade"], grade, "priorities.grade")
        for grade in r.get(priorities, "grade", "priorities", dict)
    }
    labels = _labels(r, data)
    default = _resolution(r, r.get(data, "episodes", "", dict), "episodes", Resolution())
    rules = _rules(r, data, source_ids, grade_priority, labels, default)
    critical = tuple(
        _critical(r, table, f"critical[{i}]", interpretations)
        for i, table in enumerate(r.tables(data, "critical", ""))
    )
    texts = r.get(data, "texts", "", dict)
    defaults = Texts("", "", "")
    return RuleSet(
        id=r.text(data, "id", ""),
        version=r.text(data, "version", ""),
        title=r.text(data, "title", "", ""),
        disclaimer=" ".join(r.text(data, "disclaimer", "").split()),
        rules=rules,
        critical=critical,
        grade_priority=MappingProxyType(grade_priority),
        critical_priority=r.priority(priorities, "critical", "priorities"),
        texts=Texts(
            r.text(texts, "graded", "texts"),
            r.text(texts, "graded_band", "texts"),
            r.text(texts, "critical", "texts"),
            r.text(texts, "limited", "texts", defaults.limited),
            r.text(texts, "fall", "texts", defaults.fall),
        ),
        labels=MappingProxyType(labels),
        profile=_profile(r, r.get(data, "profile", "", dict)),
        interpretations=MappingProxyType(interpretations),
        policy=MappingProxyType(
            {
                str(k): r.text(data["policy"], str(k), "policy")
                for k in r.get(data, "policy", "", dict)
            }
        ),
        sources=sources,
        deviations=tuple(
            Deviation(
                r.text(d, "id", f"deviations[{i}]"),
                r.text(d, "text", f"deviations[{i}]"),
                r.text(d, "reason", f"deviations[{i}]"),
            )
            for i, d in enumerate(r.tables(data, "deviations", ""))
        ),
        origin=origin,
        patient_limit=_patient_limit(r, data),
    )


def _patient_limit(r: Reader, data: _Table) -> PatientLimitCode | None:
    table = r.get(data, "patient_limits", "", dict, {})
    if not table:
        return None
    accepted = r.get(table, "accepted", "patient_limits", dict, {})
    code = PatientLimitCode(
        r.coding({"code": r.get(table, "observation", "patient_limits", dict)}, "patient_limits"),
        r.text(table, "v2_system", "patient_limits", ""),
    )
    if not accepted:
        return code
    lowest = r.decimal(accepted, "low", "patient_limits.accepted")
    highest = r.decimal(accepted, "high", "patient_limits.accepted")
    if not 0 < lowest <= highest:
        raise r.fail("patient_limits.accepted", "needs 0 < low <= high")
    return code._replace(lowest=lowest, highest=highest)


def _rules(
    r: Reader,
    data: _Table,
    source_ids: set[str],
    grade_priority: dict[int, str],
    labels: dict[tuple[Analyte, Measure], str],
    default: Resolution,
) -> tuple[Rule, ...]:
    rules: list[Rule] = []
    for i, table in enumerate(r.tables(data, "rules", "")):
        where = f"rules[{i}]"
        kind = r.text(table, "kind", where)
        sources = r.texts(table, "sources", where)
        if unknown := set(sources) - source_ids:
            raise r.fail(f"{where}.sources", f"unknown sources {sorted(unknown)}")
        rule: Rule
        if kind in ("below", "above"):
            rule = _threshold(r, table, where, kind, sources, grade_priority, labels)
        elif kind == "pancytopenia":
            rule = _pancytopenia(r, table, where, sources, rules)
        elif kind == "fall":
            rule = _trend(r, table, where, sources, labels)
        else:
            raise r.fail(f"{where}.kind", f"unknown kind {kind!r}")
        if any(rule.id == other.id for other in rules):
            raise r.fail(f"{where}.id", f"{rule.id!r} is used twice")
        rules.append(rule._replace(resolution=_resolution(r, table, where, default)))
    return tuple(rules)


def _threshold(
    r: Reader,
    table: _Table,
    where: str,
    kind: str,
    sources: tuple[str, ...],
    grade_priority: dict[int, str],
    labels: dict[tuple[Analyte, Measure], str],
) -> ThresholdRule:
    threshold = r.decimal(table, "threshold", where)
    analyte = r.analyte(table, where)
    grades = tuple(
        Grade(
            r.get(g, "grade", f"{where}.grades[{j}]", int),
            r.decimal(g, "below", f"{where}.grades[{j}]"),
        )
        for j, g in enumerate(r.tables(table, "grades", where))
    )
    bands = tuple(
        Band(r.text(b, "band", f"{where}.bands[{j}]"), r.decimal(b, "below", f"{where}.bands[{j}]"))
        for j, b in enumerate(r.tables(table, "bands", where))
    )
    for key, steps in (("grades", grades), ("bands", bands)):
        if not steps:
            continue
        bounds = [step.below for step in steps]
        if kind != "below" or bounds != sorted(bounds) or bounds[-1] != threshold:
            raise r.fail(
                f"{where}.{key}",
                f"must be ordered by 'below', most severe first, and"
                f" end at the threshold {threshold} (only for kind 'below')",
            )
    if grades:
        numbers = [grade.grade for grade in grades]
        if numbers != sorted(numbers, reverse=True) or not set(numbers) <= set(grade_priority):
            raise r.fail(f"{where}.grades", "grades must descend and each have a priority")
    return ThresholdRule(
        id=r.text(table, "id", where),
        kind=kind,
        analyte=analyte,
        threshold=threshold,
        unit=r.text(table, "unit", where),
        name=r.text(table, "name", where),
        code=r.coding(table, where),
        grades=grades,
        bands=bands,
        priority="" if grades else r.priority(table, "priority", where),
        sources=sources,
        considerations=r.texts(table, "considerations", where),
        next_steps=r.texts(table, "next_steps", where),
        label=labels.get((analyte, Measure.COUNT), f"{analyte.value} count"),
    )


def _pancytopenia(
    r: Reader, table: _Table, where: str, sources: tuple[str, ...], before: list[Rule]
) -> PancytopeniaRule:
    requires = r.text(table, "requires", where)
    lead = next((rule for rule in before if rule.id == requires), None)
    if (
        not isinstance(lead, ThresholdRule)
        or lead.kind != "below"
        or lead.analyte is not Analyte.WBC
    ):
        raise r.fail(
            f"{where}.requires", f"{requires!r} must be an earlier 'below' rule on the WBC"
        )
    hemoglobin = r.get(table, "hemoglobin", where, dict)
    limits = {sex: r.decimal(hemoglobin, sex, f"{where}.hemoglobin") for sex in hemoglobin}
    if "default" not in limits:
        raise r.fail(f"{where}.hemoglobin", "needs a 'default' limit (sex unknown)")
    return PancytopeniaRule(
        id=r.text(table, "id", where),
        name=r.text(table, "name", where),
        code=r.coding(table, where),
        requires=requires,
        hemoglobin_below=MappingProxyType(limits),
        hemoglobin_unit=r.text(table, "hemoglobin_unit", where),
        platelets_below=r.decimal(table, "platelets", where),
        platelets_unit=r.text(table, "platelets_unit", where),
        priority=r.priority(table, "priority", where),
        sources=sources,
        considerations=r.texts(table, "considerations", where),
        next_steps=r.texts(table, "next_steps", where),
    )


def _trend(
    r: Reader,
    table: _Table,
    where: str,
    sources: tuple[str, ...],
    labels: dict[tuple[Analyte, Measure], str],
) -> TrendRule:
    """A fall since the previous report (see :class:`TrendRule`)."""
    analyte = r.analyte(table, where)
    within = r.get(table, "within_hours", where, int)
    if within < 1:
        raise r.fail(f"{where}.within_hours", "must be at least 1")
    percent = r.decimal(table, "fall_percent", where) if "fall_percent" in table else None
    if percent is not None and not 0 < percent < 100:
        raise r.fail(f"{where}.fall_percent", "must be above 0 and below 100")
    previous = r.decimal(table, "previous_above", where) if "previous_above" in table else None
    if percent is None and previous is None:
        raise r.fail(where, "a fall needs 'fall_percent' or 'previous_above' (or both)")
    return TrendRule(
        id=r.text(table, "id", where),
        analyte=analyte,
        within_hours=within,
        now_below=r.decimal(table, "now_below", where),
        unit=r.text(table, "unit", where),
        name=r.text(table, "name", where),
        code=r.coding(table, where),
        priority=r.priority(table, "priority", where),
        fall_percent=percent,
        previous_above=previous,
        children=r.get(table, "children", where, bool, False),
        sources=sources,
        considerations=r.texts(table, "considerations", where),
        next_steps=r.texts(table, "next_steps", where),
        label=labels.get((analyte, Measure.COUNT), f"{analyte.value} count"),
    )


def _resolution(r: Reader, table: _Table, where: str, default: Resolution) -> Resolution:
    """``resolve_after`` (reports, at least 1) and ``resolve_min_interval_hours`` (0 or more;
    0 when a single report resolves), each falling back to ``default``."""
    after = r.get(table, "resolve_after", where, int, default.after)
    hours = r.get(table, "resolve_min_interval_hours", where, int, default.min_interval_hours)
    if after < 1:
        raise r.fail(f"{where}.resolve_after", "must be at least 1")
    if hours < 0 or (after == 1 and hours):
        raise r.fail(
            f"{where}.resolve_min_interval_hours",
            "must be 0 or more, and 0 when resolve_after is 1 (one report spans no time)",
        )
    return Resolution(after, hours)


def _critical(
    r: Reader, table: _Table, where: str, interpretations: dict[str, str]
) -> CriticalLimit:
    code = r.text(table, "interpretation", where)
    if code not in interpretations:
        raise r.fail(f"{where}.interpretation", f"{code!r} is not in [interpretations]")
    return CriticalLimit(
        r.analyte(table, where),
        r.decimal(table, "below", where),
        code,
        r.text(table, "source", where, ""),
    )


def _labels(r: Reader, data: _Table) -> dict[tuple[Analyte, Measure], str]:
    labels: dict[tuple[Analyte, Measure], str] = {}
    for name, table in r.get(data, "labels", "", dict).items():
        analyte = r.analyte({"analyte": name}, "labels")
        for measure_name in table:
            measure = r.measure({"measure": measure_name}, f"labels.{name}")
            labels[(analyte, measure)] = r.text(table, measure_name, f"labels.{name}")
    return labels


def _profile(r: Reader, table: _Table) -> Profile:
    intervals: dict[tuple[str, str], Interval] = {}
    for i, item in enumerate(r.tables(table, "intervals", "profile")):
        where = f"profile.intervals[{i}]"
        interval = Interval(
            r.analyte(item, where),
            r.measure(item, where),
            r.decimal(item, "low", where),
            r.decimal(item, "high", where),
            r.text(item, "unit", where),
        )
        if interval.low > interval.high:
            raise r.fail(where, "low is above high")
        intervals[interval_key(interval.analyte, interval.measure)] = interval
    return Profile(
        r.text(table, "name", "profile"),
        r.text(table, "version", "profile"),
        MappingProxyType(intervals),
        r.text(table, "source", "profile", ""),
    )


def read_intervals(table: _Table, name: str) -> Mapping[tuple[str, str], Interval]:
    """Intervals written as the rule file's ``[profile].intervals`` (a deployment profile's)."""
    return _profile(Reader(name), table).intervals

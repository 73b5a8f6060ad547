"""Trend findings (rule kind ``fall``), decided where the patient's reports are known.

A trend rule compares a report's count with the *previous* value of that count: the
latest report before it in fold order (collection time, then report identifier) that has
a usable value of it and is not withdrawn; reports without that count are passed over.
It is evaluated only when that previous report was collected at most ``within_hours``
before; otherwise (and for a first report) it is not evaluated, which neither opens,
extends nor closes an episode.  So a trend finding depends only on the reports and their
collection times, never on the order the messages arrived in: the fold recomputes it
from the sorted window each time a report comes in before others.

Open bounds follow :mod:`leukofhir.rules.compare`: a condition is decided only when every
value the bound allows decides it the same way (WBC ``<0.5`` is below 0.5; a fall by half
from ``>3.0`` to 1.2 is certain, from ``<3.0`` it cannot be decided).

Pure: :func:`trend_points` reads the state, :func:`trend_seen` one pair of values.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation

from leukofhir.lifecycle.episodes import Point
from leukofhir.lifecycle.facts import ABSENT, NOT_EVALUATED, PRESENT, Sample, Seen
from leukofhir.lifecycle.instants import hours_between
from leukofhir.lifecycle.state import PatientState, ReportRecord, seen_as
from leukofhir.rules import RuleSet, TrendRule
from leukofhir.rules.compare import above, at_most, below

__all__ = ["latest_samples", "trend_points", "trend_seen"]

_COMPARATORS = ("<=", ">=", "<", ">")
_HUNDRED = Decimal(100)


def trend_points(
    state: PatientState, start: int, stop: int, index: int, rule: TrendRule, rule_set: RuleSet
) -> Iterator[Point]:
    """The points of ``state.reports[start:stop]`` for the ``index``-th rule, a trend rule.
    A report whose letter is ``T`` is decided here; one the rules step decided already
    (``N``: not evaluated for a child) keeps its letter."""
    analyte = rule.analyte.value
    slot = state.analytes.index(analyte) if analyte in state.analytes else -1
    previous = _previous(state, start, slot, analyte)
    for record in state.reports[start:stop]:
        current = record.sample(slot, analyte) if slot >= 0 else None
        if record.withdrawn:
            seen = seen_as(rule.id, NOT_EVALUATED)
            current = None
        elif record.letters[index] == "T":
            seen = trend_seen(rule, rule_set, current, previous)
        else:
            seen = state.seen(record, index)
        yield Point(record.report, record.collected, record.shown, seen)
        if current is not None:
            previous = current


def _previous(state: PatientState, position: int, slot: int, analyte: str) -> Sample | None:
    """The latest value of the count before ``state.reports[position]``."""
    if slot < 0:
        return None
    for record in reversed(state.reports[:position]):
        if not record.withdrawn and (sample := record.sample(slot, analyte)) is not None:
            return sample
    return next((b for b in state.before if b.analyte == analyte), None)


def latest_samples(state: PatientState, leaving: tuple[ReportRecord, ...]) -> tuple[Sample, ...]:
    """``state.before`` once ``leaving`` left the window: per count, the latest value."""
    latest = {b.analyte: b for b in state.before}
    for slot, analyte in enumerate(state.analytes):
        for record in reversed(leaving):
            if not record.withdrawn and (sample := record.sample(slot, analyte)) is not None:
                latest[analyte] = sample
                break
    return tuple(latest[a] for a in state.analytes if a in latest)


def trend_seen(
    rule: TrendRule, rule_set: RuleSet, current: Sample | None, previous: Sample | None
) -> Seen:
    """The rule for ``current`` against ``previous`` (see the module doc)."""
    if current is None or previous is None or not current.collected or not previous.collected:
        return seen_as(rule.id, NOT_EVALUATED)
    hours = hours_between(previous.collected, current.collected)
    if hours > rule.within_hours:
        return seen_as(rule.id, NOT_EVALUATED)
    now, before = _read(current.value), _read(previous.value)
    if now is None or before is None:
        return seen_as(rule.id, NOT_EVALUATED)
    tests = [below(now[0], now[1], rule.now_below)]
    if rule.previous_above is not None:
        tests.append(above(before[0], before[1], rule.previous_above))
    if rule.fall_percent is not None:
        tests.append(_fell(now, before, 1 - rule.fall_percent / _HUNDRED))
    if any(test is False for test in tests):
        return seen_as(rule.id, ABSENT)
    if any(test is None for test in tests):
        return seen_as(rule.id, NOT_EVALUATED)
    return _present(rule, rule_set, current, previous, now, before, hours)


def _present(
    rule: TrendRule,
    rule_set: RuleSet,
    current: Sample,
    previous: Sample,
    now: tuple[Decimal, str],
    before: tuple[Decimal, str],
    hours: float,
) -> Seen:
    limit = rule_set.critical_below(rule.analyte)
    critical = limit is not None and below(now[0], now[1], limit) is True
    change = ""
    if not now[1] and not before[1] and before[0]:
        percent = ((now[0] - before[0]) / before[0] * _HUNDRED).quantize(
            Decimal(1), rounding=ROUND_HALF_EVEN
        )
        change = f" ({percent} % in {round(hours)} h)"
    text = rule_set.texts.fall.format(
        name=rule.name,
        label=rule.label,
        previous=f"{_plain(previous.value)} {rule.unit}",
        previous_time=_minute(previous.shown),
        current=f"{_plain(current.value)} {rule.unit}",
        current_time=_minute(current.shown),
        change=change,
    )
    priority = rule.priority
    if critical:
        text = rule_set.texts.critical.format(text=text)
        priority = rule_set.critical_priority
    evidence = tuple(key for key in (current.observation, previous.observation) if key)
    return Seen(
        rule.id,
        PRESENT,
        None,
        priority,
        text,
        _plain(str(now[0])),
        now[1],
        rule.unit,
        evidence,
        critical,
    )


def _minute(shown: str) -> str:
    """A collection time as the lab wrote it, to the minute: ``2025-01-27 05:35 -05:00``."""
    if not shown:
        return "an unknown time"
    day, _, rest = shown.partition("T")
    if not rest:
        return day
    offset = rest[8:].lstrip(".0123456789") if len(rest) > 8 else ""
    return f"{day} {rest[:5]} {offset}".rstrip()


def _plain(value: str) -> str:
    """A normalised value as a reader expects it: without the trailing zeros a unit
    conversion leaves (2800 /uL is 2.8 10*9/L, not 2.800), with one decimal at least
    (3000 /uL is 3.0), never in exponent form."""
    read = _read(value)
    if read is None:
        return value
    number, comparator = read
    plain = number.normalize()
    if plain.as_tuple().exponent >= 0:  # type: ignore[operator]  # a whole number: 2.0
        plain = plain.quantize(Decimal("0.1"))
    return f"{comparator}{format(plain, 'f')}"


def _read(value: str) -> tuple[Decimal, str] | None:
    comparator = next((c for c in _COMPARATORS if value.startswith(c)), "")
    try:
        number = Decimal(value[len(comparator) :])
    except InvalidOperation:
        return None
    return (number, comparator) if number.is_finite() else None


def _fell(now: tuple[Decimal, str], before: tuple[Decimal, str], ratio: Decimal) -> bool | None:
    """now <= ratio × before, for every value the bounds allow."""
    number, comparator = before
    limit = ratio * number
    if not comparator:
        return at_most(now[0], now[1], limit)
    if comparator in (">", ">="):  # before is at least its number: the limit only grows
        return True if at_most(now[0], now[1], limit) else None
    return False if above(now[0], now[1], limit) else None  # before is at most its number

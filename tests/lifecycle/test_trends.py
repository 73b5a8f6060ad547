"""Trend findings (rule kind ``fall``): decided in the lifecycle fold against the previous
value of the same count, only when that report was collected within the rule's window;
they depend only on the reports and their collection times, never on arrival order."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from leukofhir.context import Context
from leukofhir.lifecycle.facts import ABSENT, NOT_EVALUATED, PRESENT, Sample
from leukofhir.lifecycle.settle import settle_message
from leukofhir.lifecycle.state import (
    FORMAT,
    PatientState,
    decode_state,
    encode_state,
)
from leukofhir.lifecycle.trends import trend_points, trend_seen
from leukofhir.pipeline import process
from leukofhir.rules import TrendRule
from tests.conftest import make_context
from tests.lifecycle.server_model import ServerModel, live_flags
from tests.rules.clinical_messages import ANC, WBC, oru

CONTEXT: Context = make_context()
RULES = CONTEXT.rule_set
ANC_FALL, WBC_FALL = (r for r in RULES.rules if isinstance(r, TrendRule))
START = datetime(2025, 3, 1, 8, 0, tzinfo=UTC)


class CodecStore:
    """A memory store that keeps states as their bytes (the codec on every save)."""

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}

    def load(self, patient: str) -> PatientState:
        found = self.data.get(patient)
        return decode_state(found) if found is not None else PatientState()

    def save(self, states: Mapping[str, PatientState]) -> None:
        self.data.update({k: encode_state(v) for k, v in states.items()})


def message(n: int, hours: int, anc: str, wbc: str) -> bytes:
    collected = f"{START + timedelta(hours=hours):%Y%m%d%H%M%S}+0000"
    return oru(
        collected=collected,
        counts={WBC: wbc, ANC: anc},
        order=f"F{n:03d}",
        control=f"C{n:03d}",
    )


def deliver(messages: list[bytes], store: CodecStore, model: ServerModel) -> str:
    patient = ""
    for data in messages:
        for outcome in process(data, CONTEXT):
            settled, states = settle_message(outcome, store.load, RULES)
            store.save(states)
            patient = next(iter(states), patient)
            for document in settled.documents():
                if document["resourceType"] == "Bundle":
                    model.apply(document)
    return patient


def decided(state: PatientState, rule: TrendRule) -> dict[str, str]:
    """Report identifier → the rule's state in it, as the fold decides it."""
    index = [r.id for r in RULES.rules].index(rule.id)
    points = trend_points(state, 0, len(state.reports), index, rule, RULES)
    return {p.report.rpartition("|")[2]: p.seen.state for p in points}


def oracle(reports: list[tuple[int, int, str, str]]) -> dict[str, dict[str, str]]:
    """The rules by hand over the reports sorted by collection time: (n, hours, anc, wbc)."""
    out: dict[str, dict[str, str]] = {"anc-fall": {}, "wbc-fall": {}}
    ordered = sorted(reports, key=lambda r: r[1])
    for i, (n, hours, anc, wbc) in enumerate(ordered):
        key = f"F{n:03d}"
        if i == 0 or hours - ordered[i - 1][1] > 72:
            out["anc-fall"][key] = out["wbc-fall"][key] = NOT_EVALUATED
            continue
        _, _, anc0, wbc0 = ordered[i - 1]
        fell = Decimal(anc) <= Decimal(anc0) / 2 and Decimal(anc) < Decimal("1.5")
        out["anc-fall"][key] = PRESENT if fell else ABSENT
        drop = Decimal(wbc0) > 1 and Decimal(wbc) < Decimal("0.5")
        out["wbc-fall"][key] = PRESENT if drop else ABSENT
    return out


ANCS = ["4.0", "3.0", "1.4", "1.2", "0.7", "0.3"]
WBCS = ["6.0", "2.5", "1.1", "0.9", "0.4", "0.3"]


@st.composite
def histories(draw: st.DrawFn) -> list[tuple[int, int, str, str]]:
    """A patient's reports: distinct collection times 6 h to 4 days apart (the 72-hour
    window matters), counts that fall, rise and stay."""
    hours, out = 0, []
    for n in range(draw(st.integers(2, 7))):
        hours += draw(st.sampled_from([6, 24, 48, 71, 72, 73, 96]))
        out.append((n, hours, draw(st.sampled_from(ANCS)), draw(st.sampled_from(WBCS))))
    return out


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(reports=histories(), data=st.data())
def test_trend_findings_depend_only_on_collection_times(
    reports: list[tuple[int, int, str, str]], data: st.DataObject
) -> None:
    messages = {n: message(n, hours, anc, wbc) for n, hours, anc, wbc in reports}
    arrival = data.draw(st.permutations(sorted(messages)))
    expected_model, shuffled_model = ServerModel(), ServerModel()
    in_order, shuffled = CodecStore(), CodecStore()
    patient = deliver([messages[n] for n in sorted(messages)], in_order, expected_model)
    deliver([messages[n] for n in arrival], shuffled, shuffled_model)
    want = oracle(reports)
    for rule in (ANC_FALL, WBC_FALL):
        assert decided(shuffled.load(patient), rule) == want[rule.id]
        assert decided(in_order.load(patient), rule) == want[rule.id]
    trend = {"anc-fall", "wbc-fall"}

    def trend_flags(model: ServerModel) -> dict[str, object]:
        flags = live_flags(model)
        return {k: f for k, f in flags.items() if f["code"]["coding"][0]["code"] in trend}  # type: ignore[index]

    assert trend_flags(shuffled_model) == trend_flags(expected_model)


def sample(value: str, hours: float, observation: str = "") -> Sample:
    when = START + timedelta(hours=hours)
    return Sample(
        "neutrophils", value, f"{when:%Y-%m-%dT%H:%M:%S}Z", when.isoformat(), "R", observation
    )


def test_a_fall_within_the_window_with_both_values_as_evidence() -> None:
    seen = trend_seen(ANC_FALL, RULES, sample("0.6", 48, "lab|now"), sample("2.0", 0, "lab|then"))
    assert seen.state == PRESENT
    assert seen.priority == "PH"
    assert seen.evidence == ("lab|now", "lab|then")
    assert (
        "2.0 10*9/L at 2025-03-01 08:00 +00:00 to 0.6 10*9/L at 2025-03-03 08:00 +00:00"
        " (-70 % in 48 h)"
    ) in seen.text
    assert not seen.critical
    critical = trend_seen(ANC_FALL, RULES, sample("0.4", 24), sample("2.0", 0))
    assert critical.critical
    assert critical.text.endswith("critical value")


def test_outside_the_window_or_without_a_previous_value_it_is_not_evaluated() -> None:
    assert trend_seen(ANC_FALL, RULES, sample("0.6", 72.5), sample("2.0", 0)).state == NOT_EVALUATED
    assert trend_seen(ANC_FALL, RULES, sample("0.6", 72), sample("2.0", 0)).state == PRESENT
    assert trend_seen(ANC_FALL, RULES, sample("0.6", 1), None).state == NOT_EVALUATED


def test_a_fall_of_less_than_half_or_not_below_the_limit_is_absent() -> None:
    assert trend_seen(ANC_FALL, RULES, sample("1.1", 24), sample("2.0", 0)).state == ABSENT
    assert trend_seen(ANC_FALL, RULES, sample("1.6", 24), sample("4.0", 0)).state == ABSENT


def test_open_bounds_decide_only_when_every_value_does() -> None:
    assert trend_seen(ANC_FALL, RULES, sample("<0.5", 24), sample("2.0", 0)).state == PRESENT
    # from '<3.0' a fall by half to 1.2 cannot be decided; from '>3.0' it is certain
    assert trend_seen(ANC_FALL, RULES, sample("1.2", 24), sample("<3.0", 0)).state == NOT_EVALUATED
    assert trend_seen(ANC_FALL, RULES, sample("1.2", 24), sample(">3.0", 0)).state == PRESENT


def test_the_wbc_delta_check() -> None:
    wbc = [sample("1.2", 0), sample("0.4", 30)]
    seen = trend_seen(WBC_FALL, RULES, wbc[1], wbc[0])
    assert (seen.state, seen.critical, seen.priority) == (PRESENT, True, "PH")
    assert trend_seen(WBC_FALL, RULES, sample("0.4", 30), sample("1.0", 0)).state == ABSENT


def test_the_previous_value_survives_the_window() -> None:
    """33 reports 12 h apart: the first leaves the 32-report window; a late report then
    refolds the window, and the fall at the second report still has its previous value
    (kept in ``state.before``)."""
    anc = ["3.0", "1.0"] + ["2.0"] * 31
    store, model = CodecStore(), ServerModel()
    msgs = [message(n, 12 * n, value, "6.0") for n, value in enumerate(anc)]
    patient = deliver(msgs, store, model)
    state = store.load(patient)
    assert len(state.reports) == 32
    assert [b.value for b in state.before if b.analyte == "neutrophils"] == ["3.0"]
    deliver([message(99, 12 * 5 + 1, "2.0", "6.0")], store, model)  # a late report
    (flag,) = [f for f in model.of("Flag").values() if f["code"]["coding"][0]["code"] == "anc-fall"]
    assert flag["status"] == "inactive"  # opened by F001, closed by the rises after it
    # (without ``before``, F001 would have no previous value in the refold, and its Flag
    # would be withdrawn); F001 has left the window now, its value is the one kept
    assert [b.value for b in store.load(patient).before if b.analyte == "neutrophils"] == ["1.0"]


def test_a_format_1_state_still_decodes() -> None:
    store, model = CodecStore(), ServerModel()
    patient = deliver([message(0, 0, "3.0", "6.0"), message(1, 24, "1.0", "6.0")], store, model)
    state = store.load(patient)
    assert FORMAT == 2
    items = orjson.loads(encode_state(state))
    old = [1, items[1], [r[:8] for r in items[2]], *items[3:8]]  # no values, no before
    decoded = decode_state(orjson.dumps(old))
    assert decoded.reports[0].values == ()
    assert decoded.analytes == ()
    # folding into it works: the next report is judged without a previous value
    assert [r.report for r in decoded.reports] == [r.report for r in state.reports]

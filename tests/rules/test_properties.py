"""Properties over arbitrary CBC lines: never raises, every line accounted for once, pure."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from leukofhir.errors import Location
from leukofhir.model import LOINC, Coding, LabObservation, Value
from leukofhir.rules import evaluate
from leukofhir.terminology import build_cbc
from tests.rules.helpers import RULES, TERMINOLOGY
from tests.terminology.builders import report

CODES = [*TERMINOLOGY.fields, *TERMINOLOGY.never, "2345-7", "11156-7", ""]
UNITS = ["10*3/uL", "/uL", "K/µL", "G/L", "g/L", "%", "g/dL", "mmol/L", "xyz", ""]
STATUSES = ["F", "C", "P", "X", "W", "D", "I", "", "final", "cancelled", "Q"]
COMPARATORS = ["", "", "", "<", "<=", ">", ">=", "="]

numbers = st.one_of(
    st.none(),
    st.decimals(min_value=-5, max_value=2000, places=3, allow_nan=False),
    st.sampled_from([Decimal("NaN"), Decimal("Infinity"), Decimal("0"), Decimal("1.5")]),
)


@st.composite
def observations(draw: st.DrawFn) -> LabObservation:
    number = draw(numbers)
    comparator = draw(st.sampled_from(COMPARATORS))
    text = "" if number is None else f"{comparator}{number}"
    return LabObservation(
        location=Location("OBX"),
        codes=(Coding(draw(st.sampled_from(CODES)), LOINC),),
        value=None if draw(st.booleans()) and number is None else Value(text, number, comparator),
        unit=Coding(draw(st.sampled_from(UNITS))),
        status=draw(st.sampled_from(STATUSES)),
        reference_range=draw(st.sampled_from(["", "4.3-10.8", "<30", "x", "10-1"])),
        abnormal_flags=tuple(
            draw(st.lists(st.sampled_from(["L", "H", "N", "LL", "??"]), max_size=2))
        ),
    )


@settings(max_examples=300, deadline=None)
@given(st.lists(observations(), max_size=25), st.sampled_from(["", "female", "male", "other"]))
def test_any_report(lines: list[LabObservation], sex: str) -> None:
    lab_report = report(*lines)
    cbc = build_cbc(lab_report, TERMINOLOGY)
    evaluation = evaluate(cbc, RULES, sex=sex)
    # every line exactly once
    placed = [v.observation for v in (*cbc.values, *cbc.superseded) if v.observation is not None]
    placed += list(cbc.unmapped)
    assert sorted(str(o.location) for o in placed) == sorted(
        str(o.location) for o in lab_report.observations
    )
    # one value per (analyte, measure)
    keys = [(v.analyte, v.measure) for v in cbc.values]
    assert len(keys) == len(set(keys))
    # an unusable value has no number; a usable one is never negative
    for value in (*cbc.values, *cbc.superseded):
        if value.problem:
            assert value.number is None
        if value.usable:
            assert value.number is not None
            assert value.number >= 0
    # every rule either found, not evaluated, or decided absent - never twice
    ids = [f.rule_id for f in evaluation.findings] + [n.rule_id for n in evaluation.not_evaluated]
    assert len(ids) == len(set(ids))
    for found in evaluation.findings:
        assert found.priority in {"PL", "PM", "PH"}
        assert found.evidence
        assert all(e.value.usable for e in found.evidence)
    # pure
    assert build_cbc(lab_report, TERMINOLOGY) == cbc
    assert evaluate(cbc, RULES, sex=sex) == evaluation

"""Cbc → Evaluation: derived counts, open bounds, pancytopenia, critical values, reasons."""

from __future__ import annotations

from decimal import Decimal

import pytest

from leukofhir.errors import Location, Severity
from leukofhir.model import Analyte, Finding, Measure
from leukofhir.rules import evaluate
from leukofhir.terminology import build_cbc
from tests.rules.helpers import RULES, TERMINOLOGY, evaluate_lines, finding, not_evaluated
from tests.terminology.builders import (
    ALC,
    ANC,
    BAND,
    BAND_PCT,
    EOS_PCT,
    HGB,
    LYMPH_PCT,
    MONO_PCT,
    NEUT_PCT,
    PLT,
    SEG,
    SEG_PCT,
    count,
    line,
    percent,
    report,
    wbc,
)

RULE_IDS = [rule.id for rule in RULES.rules]


# --- findings from derived counts ---------------------------------------------------------


def test_neutropenia_from_wbc_and_percent() -> None:
    evaluation = evaluate_lines(wbc("2.5"), percent(NEUT_PCT, "40"))  # ANC 1.000
    found = finding(evaluation, "neutropenia")
    assert found is not None
    assert found.grade == 2
    assert found.band == "mild"
    (evidence,) = found.evidence
    assert evidence.value.derived
    assert evidence.value.number == Decimal("1.000")
    assert evidence.threshold == "< 1.5 10*9/L (neutropenia); CTCAE grade 2: 1.0 to < 1.5"


def test_derived_count_decides_a_band_edge_exactly() -> None:
    # 2.5 × 39.96 % = 0.99900: grade 3, not rounded up to 1.0
    found = finding(evaluate_lines(wbc("2.5"), percent(NEUT_PCT, "39.96")), "neutropenia")
    assert found is not None
    assert found.grade == 3


def test_neutropenia_from_segmented_and_band() -> None:
    evaluation = evaluate_lines(wbc("3.0"), count(SEG, "0.3"), count(BAND, "0.1"))
    found = finding(evaluation, "neutropenia")
    assert found is not None
    assert found.grade == 4
    assert found.critical
    assert [v.loinc for v in found.evidence[0].value.derived_from] == [SEG, BAND]
    assert finding(evaluation, "agranulocytosis") is None  # 0.4 is not < 0.2


def test_percentages_alone_never_flag() -> None:
    # a low neutrophil percent in a high WBC is not neutropenia
    evaluation = evaluate_lines(wbc("30.0"), percent(NEUT_PCT, "5"), percent(LYMPH_PCT, "2"))
    assert finding(evaluation, "neutropenia") is None  # ANC 1.50
    assert finding(evaluation, "lymphopenia") is not None  # ALC 0.60 (a count)
    # without a WBC, percents raise nothing and say why
    evaluation = evaluate_lines(percent(NEUT_PCT, "1"), percent(EOS_PCT, "40"))
    assert not evaluation.findings
    reason = not_evaluated(evaluation, "neutropenia")
    assert reason is not None
    assert reason.reason == (
        "no absolute neutrophil count sent, and it cannot be derived: neutrophils % is sent"
        " but no WBC"
    )


# --- open bounds (comparators) ------------------------------------------------------------


def test_wbc_below_half_is_grade_4_and_critical() -> None:
    evaluation = evaluate_lines(wbc("<0.5"))
    found = finding(evaluation, "leukopenia")
    assert found is not None
    assert found.grade == 4
    assert found.critical
    assert found.priority == "PH"
    assert found.evidence[0].value.comparator == "<"
    assert finding(evaluation, "leukocytosis") is None
    assert not_evaluated(evaluation, "leukocytosis") is None  # decided: absent
    (pair,) = evaluation.interpretations
    assert pair[1].code == "LL"


def test_wbc_above_eleven_is_leukocytosis() -> None:
    evaluation = evaluate_lines(wbc(">11.0"))
    assert finding(evaluation, "leukocytosis") is not None
    assert finding(evaluation, "leukopenia") is None
    assert not_evaluated(evaluation, "leukopenia") is None


def test_wbc_below_3_5_is_leukopenia_without_grade_at_the_most_severe_priority() -> None:
    """RULES.md: a bound is used where it decides the rule; '<3.5' decides leukopenia but not
    its grade (1 to 4), so the Flag is raised ungraded, never at a lower priority."""
    evaluation = evaluate_lines(wbc("<3.5"))
    found = finding(evaluation, "leukopenia")
    assert found is not None
    assert found.grade is None
    assert found.priority == "PH"
    assert found.text == "Leukopenia, CTCAE grade 1 to 4 (not decidable from an open bound)"
    assert not_evaluated(evaluation, "leukopenia") is None
    (issue,) = evaluation.issues
    assert issue.severity is Severity.WARNING
    assert issue.location == Location("OBX", 1, 5)
    assert "'<3.5' is an open bound" in issue.message
    assert not_evaluated(evaluation, "leukocytosis") is None


@pytest.mark.parametrize(
    ("sent", "text", "critical"),
    [
        ("<2.0", "CTCAE grade 3 to 4", True),
        ("<=2.0", "CTCAE grade 2 to 4", False),
        ("<1.0", "CTCAE grade 4", True),
    ],
)
def test_ungraded_bounds(sent: str, text: str, critical: bool) -> None:
    found = finding(evaluate_lines(wbc(sent)), "leukopenia")
    assert found is not None
    assert text in found.text
    assert found.critical is critical
    assert found.priority == "PH"


def test_wbc_open_bound_that_cannot_decide_presence() -> None:
    evaluation = evaluate_lines(wbc(">4.0"))
    item = not_evaluated(evaluation, "leukopenia")
    assert item is not None
    assert item.reason == (
        "the WBC '>4.0' is an open bound: it cannot be decided whether it is < 4.3 10*9/L"
    )
    item = not_evaluated(evaluation, "leukocytosis")
    assert item is not None
    assert "> 10.8 10*9/L" in item.reason
    item = not_evaluated(evaluation, "pancytopenia")
    assert item is not None
    assert item.reason == (
        "the WBC '>4.0' is an open bound: it cannot be decided whether it is < 4.3 10*9/L;"
        " no hemoglobin sent; no platelet count sent"
    )
    assert [i.message.split(":")[0] for i in evaluation.issues] == [
        "leukopenia", "leukocytosis", "pancytopenia",
    ]  # fmt: skip


def test_anc_open_bound() -> None:
    evaluation = evaluate_lines(wbc("3.0"), count(ANC, "<0.5"))
    found = finding(evaluation, "neutropenia")
    assert found is not None
    assert (found.grade, found.band, found.critical) == (4, "severe", True)
    assert not_evaluated(evaluation, "agranulocytosis") is not None  # < 0.2 undecided


def test_percent_open_bound_gives_no_count() -> None:
    evaluation = evaluate_lines(wbc("3.0"), percent(NEUT_PCT, "<1"))
    item = not_evaluated(evaluation, "neutropenia")
    assert item is not None
    assert item.reason == (
        "no absolute neutrophil count sent, and it cannot be derived: neutrophils % '<1' is an"
        " open bound"
    )
    assert item.location == Location("OBX", 2)


# --- reasons for "not evaluated" ----------------------------------------------------------


def test_reason_wbc_unit_unknown() -> None:
    evaluation = evaluate_lines(wbc("3.0", unit="xyz"), percent(NEUT_PCT, "40"))
    leukopenia = not_evaluated(evaluation, "leukopenia")
    assert leukopenia is not None
    assert leukopenia.reason == (
        "the WBC is not usable: unit 'xyz' is not a known unit for WBC (6690-2); value not used"
    )
    neutropenia = not_evaluated(evaluation, "neutropenia")
    assert neutropenia is not None
    assert neutropenia.reason == (
        "no absolute neutrophil count sent, and it cannot be derived: neutrophils % is sent but"
        " the WBC is not usable (unit 'xyz' is not a known unit for WBC (6690-2); value not used)"
    )
    assert neutropenia.location == Location("OBX", 1)


def test_reasons_when_nothing_is_sent() -> None:
    evaluation = evaluate_lines(line(HGB, "14", "g/dL"))
    reasons = {item.rule_id: item.reason for item in evaluation.not_evaluated}
    assert reasons == {
        "leukopenia": "no WBC sent",
        "neutropenia": "no absolute neutrophil count, neutrophils % or segmented and band"
        " neutrophils sent",
        "agranulocytosis": "no absolute neutrophil count, neutrophils % or segmented and band"
        " neutrophils sent",
        "lymphopenia": "no absolute lymphocyte count or lymphocytes % sent",
        "monocytopenia": "no absolute monocyte count or monocytes % sent",
        "eosinophilia": "no absolute eosinophil count or eosinophils % sent",
        "basophilia": "no absolute basophil count or basophils % sent",
        "leukocytosis": "no WBC sent",
    }  # pancytopenia: decided absent by the normal hemoglobin


def test_reason_cancelled_count() -> None:
    evaluation = evaluate_lines(wbc("3.0"), count(ALC, "0.5", status="X"))
    item = not_evaluated(evaluation, "lymphopenia")
    assert item is not None
    assert (
        item.reason == "the absolute lymphocyte count is not usable: status X (cancelled): not used"
    )


def test_reason_segment_without_band() -> None:
    evaluation = evaluate_lines(wbc("3.0"), count(SEG, "1.0"))
    item = not_evaluated(evaluation, "neutropenia")
    assert item is not None
    assert item.reason == (
        "no absolute neutrophil count or neutrophils % sent, and segmented + band neutrophils"
        " give none: no band neutrophil count or band neutrophils % sent"
    )


def test_reason_band_percent_without_wbc() -> None:
    evaluation = evaluate_lines(percent(SEG_PCT, "50"), percent(BAND_PCT, "5"))
    item = not_evaluated(evaluation, "neutropenia")
    assert item is not None
    assert item.reason.endswith("segmented neutrophils % is sent but no WBC")


# --- pancytopenia ---------------------------------------------------------------------------


def _pancytopenia(hgb: str, sex: str, plt: str = "100", white: str = "3.0") -> Finding | None:
    evaluation = evaluate_lines(wbc(white), line(HGB, hgb, "g/dL"), count(PLT, plt), sex=sex)
    return finding(evaluation, "pancytopenia")


@pytest.mark.parametrize(
    ("hgb", "sex", "present"),
    [
        ("11.9", "female", True),
        ("12.0", "female", False),
        ("12.5", "male", True),
        ("12.9", "male", True),
        ("13.0", "male", False),
        ("11.9", "", True),
        ("12.0", "", False),
        ("12.5", "other", False),
        ("12.5", "unknown", False),
        ("12.5", "MALE", True),
    ],
)
def test_pancytopenia_by_sex(hgb: str, sex: str, present: bool) -> None:
    assert (_pancytopenia(hgb, sex) is not None) is present


def test_pancytopenia_needs_all_three() -> None:
    assert _pancytopenia("10", "female", plt="150") is None
    assert _pancytopenia("10", "female", white="4.3") is None
    found = _pancytopenia("10", "female", plt="149", white="1.5")
    assert found is not None
    assert found.priority == "PH"
    assert found.critical
    thresholds = [e.threshold for e in found.evidence]
    assert thresholds == [
        "< 4.3 10*9/L (leukopenia)",
        "< 12 g/dL (hemoglobin, sex female)",
        "< 150 10*9/L (platelets)",
    ]


def test_pancytopenia_hemoglobin_in_other_units() -> None:
    evaluation = evaluate_lines(wbc("3.0"), line(HGB, "7.0", "mmol/L"), count(PLT, "90"))
    assert finding(evaluation, "pancytopenia") is not None  # 11.28 g/dL
    evaluation = evaluate_lines(wbc("3.0"), line(HGB, "125", "g/L"), count(PLT, "90"), sex="male")
    assert finding(evaluation, "pancytopenia") is not None


def test_pancytopenia_not_evaluated_without_hemoglobin() -> None:
    evaluation = evaluate_lines(wbc("3.0"), count(PLT, "90"))
    item = not_evaluated(evaluation, "pancytopenia")
    assert item is not None
    assert item.reason == "no hemoglobin sent"
    # but decided absent when another part is normal
    evaluation = evaluate_lines(wbc("3.0"), count(PLT, "200"))
    assert not_evaluated(evaluation, "pancytopenia") is None
    evaluation = evaluate_lines(line(HGB, "10", "g/dL"), count(PLT, "90"))
    assert not_evaluated(evaluation, "pancytopenia").reason == "no WBC sent"  # type: ignore[union-attr]


def test_pancytopenia_open_bounds() -> None:
    evaluation = evaluate_lines(wbc("<3.0"), line(HGB, "<7", "g/dL"), count(PLT, "<20"))
    assert finding(evaluation, "pancytopenia") is not None
    evaluation = evaluate_lines(wbc("3.0"), line(HGB, "<13", "g/dL"), count(PLT, "90"))
    item = not_evaluated(evaluation, "pancytopenia")
    assert item is not None
    assert "hemoglobin '<13' is an open bound" in item.reason
    assert any(i.message.startswith("pancytopenia: not evaluated") for i in evaluation.issues)


# --- critical values and interpretations ----------------------------------------------------


def test_critical_wbc_overrides_the_lab_flag() -> None:
    evaluation = evaluate_lines(wbc("1.9", flags=("L",)))
    (pair,) = evaluation.interpretations
    assert (pair[1].code, pair[1].display, pair[1].source) == ("LL", "Critical low", "rule-set")


def test_critical_derived_anc_is_ll() -> None:
    evaluation = evaluate_lines(wbc("2.0"), percent(NEUT_PCT, "20"))  # ANC 0.400
    interpretations = {(v.analyte, v.measure): i for v, i in evaluation.interpretations}
    assert interpretations[(Analyte.NEUTROPHILS, Measure.COUNT)].code == "LL"
    assert interpretations[(Analyte.WBC, Measure.COUNT)].code == "L"  # 2.0 is not critical
    assert interpretations[(Analyte.NEUTROPHILS, Measure.PERCENT)].code == "L"


def test_lab_flag_first() -> None:
    (pair,) = evaluate_lines(wbc("3.0", flags=("N",), reference_range="4.3-10.8")).interpretations
    assert (pair[1].code, pair[1].display, pair[1].source) == ("N", "Normal", "lab-flag")
    (pair,) = evaluate_lines(wbc("105.6", flags=("HH",))).interpretations
    assert (pair[1].code, pair[1].display) == ("HH", "Critical high")
    # an unknown flag is passed over, the next known one used
    (pair,) = evaluate_lines(wbc("3.0", flags=("XYZ", "l"))).interpretations
    assert pair[1].code == "L"


def test_lab_range_in_the_unit_as_sent() -> None:
    # 5000 /uL against "4300 to 10800" is normal; the normalised 5.000 must not be compared
    (pair,) = evaluate_lines(
        wbc("5000", unit="/uL", reference_range="4300 to 10800")
    ).interpretations
    assert (pair[1].code, pair[1].source) == ("N", "lab-range")
    (pair,) = evaluate_lines(
        wbc("4200", unit="/uL", reference_range="4300 to 10800")
    ).interpretations
    assert pair[1].code == "L"
    (pair,) = evaluate_lines(wbc("12", reference_range=">50")).interpretations
    assert pair[1].code == "L"


def test_unparsed_lab_range_falls_back_to_the_profile() -> None:
    (pair,) = evaluate_lines(wbc("4.0", reference_range="see report")).interpretations
    assert (pair[1].code, pair[1].source) == ("L", "default-range")


def test_default_profile_intervals() -> None:
    evaluation = evaluate_lines(
        wbc("7.0"), percent(NEUT_PCT, "55"), percent(LYMPH_PCT, "30"), percent(MONO_PCT, "9"),
        percent(EOS_PCT, "5"), line("706-2", "1", "%"),
    )  # fmt: skip
    codes = {(v.analyte, v.measure): i.code for v, i in evaluation.interpretations}
    assert codes == {
        (Analyte.WBC, Measure.COUNT): "N",
        (Analyte.NEUTROPHILS, Measure.PERCENT): "L",  # the article's 60-66 % (a deviation)
        (Analyte.LYMPHOCYTES, Measure.PERCENT): "N",
        (Analyte.MONOCYTES, Measure.PERCENT): "H",
        (Analyte.EOSINOPHILS, Measure.PERCENT): "N",
        (Analyte.BASOPHILS, Measure.PERCENT): "N",
    }  # derived counts have no default interval and are not critical: no interpretation
    assert all(i.source == "default-range" for _, i in evaluation.interpretations)


def test_superseded_values_are_interpreted() -> None:
    evaluation = evaluate_lines(wbc("3.2"), line("33256-9", "3.0", "K/uL"))
    assert [(v.loinc, i.code) for v, i in evaluation.interpretations] == [
        ("33256-9", "L"),
        ("6690-2", "L"),
    ]


def test_unusable_value_keeps_only_the_lab_flag() -> None:
    evaluation = evaluate_lines(wbc("3.0", unit="xyz", flags=("L",)), line(ALC, "0.1", "xyz"))
    assert [(v.loinc, i.code, i.source) for v, i in evaluation.interpretations] == [
        ("6690-2", "L", "lab-flag")
    ]


# --- the whole evaluation -------------------------------------------------------------------


def test_evaluation_carries_the_rule_set() -> None:
    evaluation = evaluate_lines(wbc("2.5"), percent(NEUT_PCT, "30"), percent(LYMPH_PCT, "30"))
    assert (evaluation.rule_set_id, evaluation.rule_set_version) == ("leukopenia", "1.2.0")
    assert evaluation.profile == "article-adult 1"
    assert "not a diagnosis" in evaluation.disclaimer
    leukopenia = finding(evaluation, "leukopenia")
    assert leukopenia is not None
    assert leukopenia.code.system == "http://snomed.info/sct"
    assert leukopenia.code.code == "84828003"
    rule = RULES.rule("leukopenia")
    assert rule is not None
    assert leukopenia.considerations == rule.considerations
    assert leukopenia.next_steps == rule.next_steps
    assert [f.rule_id for f in evaluation.findings] == ["leukopenia", "neutropenia", "lymphopenia"]


def test_findings_follow_the_rule_file_order() -> None:
    evaluation = evaluate_lines(wbc("0.9"), percent(NEUT_PCT, "10"), percent(LYMPH_PCT, "10"),
                                line(HGB, "8", "g/dL"), count(PLT, "20"))  # fmt: skip
    ids = [f.rule_id for f in evaluation.findings]
    assert ids == sorted(ids, key=RULE_IDS.index)
    assert ids == ["leukopenia", "neutropenia", "agranulocytosis", "lymphopenia", "pancytopenia"]


def test_pure_and_deterministic() -> None:
    cbc = build_cbc(report(wbc("<3.5"), percent(NEUT_PCT, "40")), TERMINOLOGY)
    assert evaluate(cbc, RULES, sex="female") == evaluate(cbc, RULES, sex="female")

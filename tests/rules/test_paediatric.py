"""The paediatric profile against its sources, and what the rules do with a child.

The table below is transcribed from the sources the profile cites (Davis's WBC count and
differential table; MSD Manual, lymphocytopenia; 5-Minute Pediatric Consult and Nathan &
Oski, neutropenia), read by the profile's own rule: a band's lower limit is the lowest
lower limit of the source rows it spans.  ``None``: the band has no limit (not evaluated).
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from leukofhir.errors import Severity
from leukofhir.rules import load_rule_set
from leukofhir.rules.paediatric import load_paediatric
from tests.conftest import make_context
from tests.rules.clinical_messages import (
    ALC,
    ANC,
    WBC,
    evaluation_of,
    found,
    oru,
    outcome_of,
    skipped,
)

PROFILE = load_paediatric(load_rule_set())
CONTEXT = make_context()

# band: (leukopenia WBC <, neutropenia ANC <, lymphopenia ALC <, leukocytosis WBC >)
TABLE: dict[str, tuple[str | None, str | None, str | None, str | None]] = {
    "0-7d": (None, None, "2.8", None),  # ALC: MSD < 3.0 under 2 y, Davis 2.8 at birth: lower
    "8-28d": (None, "1.0", "3.0", None),  # ANC 1.0 after week 1; ALC: MSD < 2 y covers it
    "1-3m": ("6.1", "1.0", "3.0", "17.5"),  # Davis 1-23 mo; MSD < 2 y; ANC < 1 y
    "3-12m": ("6.1", "1.0", "3.0", "17.5"),
    "1-2y": ("6.1", "1.5", "3.0", "17.5"),  # ANC 1.5 after infancy
    "2-6y": ("4.5", "1.5", "1.7", "13.5"),  # Davis 2-10 yr
    "6-12y": ("4.5", "1.5", "1.5", "13.5"),  # MSD 1.5 at 6 y; Davis 11 yr-adult 1.5-3.7
    "12-18y": ("4.5", "1.5", "1.5", "11.1"),  # Davis 11 yr-adult
}
RULES = ("leukopenia", "neutropenia", "lymphopenia", "leukocytosis")
# a collection date in each band for a child born 15 January 2024
DAYS = {
    "0-7d": "20240118",
    "8-28d": "20240201",
    "1-3m": "20240301",
    "3-12m": "20240901",
    "1-2y": "20250601",
    "2-6y": "20270601",
    "6-12y": "20320601",
    "12-18y": "20380601",
}


@pytest.mark.parametrize("band_id", list(TABLE))
def test_every_limit_against_the_table(band_id: str) -> None:
    (band,) = [b for b in PROFILE.bands if b.id == band_id]
    for rule, want in zip(RULES, TABLE[band_id], strict=True):
        limit = band.limits.get(rule)
        assert (str(limit.limit) if limit else None) == want, (band_id, rule)
        if limit is None:
            assert rule in band.missing or PROFILE.why_missing(band, rule)
        else:
            assert limit.sources
            assert limit.rows


def test_every_source_is_cited_with_a_citation() -> None:
    assert {s.id for s in PROFILE.sources} >= {"davis", "msd", "five-minute", "nathan-oski"}
    assert all(s.citation for s in PROFILE.sources)
    assert "race" in PROFILE.policy  # race-based adjustments are named and not used


@pytest.mark.parametrize("band_id", list(TABLE))
def test_each_side_of_each_limit_in_its_band(band_id: str) -> None:
    """Just below a limit the finding is there, at it not; no limit: not evaluated."""
    wbc_low, anc_low, alc_low, wbc_high = TABLE[band_id]
    for rule, limit, code in (
        ("leukopenia", wbc_low, WBC),
        ("neutropenia", anc_low, ANC),
        ("lymphopenia", alc_low, ALC),
    ):
        if limit is None:
            data = oru(
                birth="20240115",
                collected=f"{DAYS[band_id]}080000+0000",
                counts={code: "2.5" if code == WBC else "0.9"},  # not critical
            )
            evaluation = evaluation_of(data, CONTEXT)
            assert rule in skipped(evaluation), (band_id, rule)
            assert "the adult limit is not applied to a child" in skipped(evaluation)[rule]
            continue
        below = str(Decimal(limit) - Decimal("0.01"))
        for value, present in ((below, True), (limit, False)):
            data = oru(
                birth="20240115", collected=f"{DAYS[band_id]}080000+0000", counts={code: value}
            )
            evaluation = evaluation_of(data, CONTEXT)
            assert (rule in found(evaluation)) is present, (band_id, rule, value)
            if present:
                (finding,) = [f for f in evaluation.findings if f.rule_id == rule]
                assert f"limit < {limit} 10*9/L for age band" in finding.text
    if wbc_high is not None:
        above = str(Decimal(wbc_high) + Decimal("0.1"))
        data = oru(birth="20240115", collected=f"{DAYS[band_id]}080000+0000", counts={WBC: above})
        assert "leukocytosis" in found(evaluation_of(data, CONTEXT))


def report_resource(data: bytes) -> dict[str, object]:
    (report,) = outcome_of(data, CONTEXT).reports
    (resource,) = [
        e["resource"]
        for e in report.bundle["entry"]
        if e["resource"]["resourceType"] == "DiagnosticReport"
    ]
    return dict(resource)


def test_the_issue_examples() -> None:
    # a newborn's WBC 6 on day 3 does not pass as normal: leukopenia is not evaluated, said why
    newborn = oru(birth="20250301", collected="20250304080000+0000", counts={WBC: "6.0"})
    evaluation = evaluation_of(newborn, CONTEXT)
    assert "leukopenia" not in found(evaluation)
    assert "first week" in skipped(evaluation)["leukopenia"]
    conclusion = str(report_resource(newborn)["conclusion"])
    assert "Not evaluated: leukopenia: patient aged 0-7 days" in conclusion
    assert "Limits for age band 0-7 days (paediatric 1.0.0), not the adult limits." in conclusion
    # a toddler with ALC 1.5 is lymphopenic (limit 3.0), not normal as for an adult (1.0)
    toddler = oru(birth="20240115", collected="20250601080000+0000", counts={ALC: "1.5"})
    evaluation = evaluation_of(toddler, CONTEXT)
    assert found(evaluation)["lymphopenia"] == (1, "PL")
    (alc,) = [i for v, i in evaluation.interpretations if v.analyte.value == "lymphocytes"]
    assert alc.code == "L"  # the band's interval 3.0-10.7, not the adult one


def test_grades_are_cut_at_the_band_limit() -> None:
    # infant (limit 1.0): ANC 0.9 is grade 3, 0.4 grade 4; no grade 2 (1.0-1.5 is normal)
    for value, grade in (("0.9", 3), ("0.4", 4)):
        data = oru(birth="20240115", collected="20240901080000+0000", counts={ANC: value})
        assert found(evaluation_of(data, CONTEXT))["neutropenia"][0] == grade
    # 1-2 years, WBC limit 6.1: 5.0 is grade 1 (3.0 to < 6.1)
    data = oru(birth="20240115", collected="20250601080000+0000", counts={WBC: "5.0"})
    assert found(evaluation_of(data, CONTEXT))["leukopenia"] == (1, "PL")


def test_findings_without_a_paediatric_limit_are_not_evaluated_for_a_child() -> None:
    data = oru(birth="20200115", collected="20250601080000+0000", counts={ANC: "0.1"})
    evaluation = evaluation_of(data, CONTEXT)
    assert "neutropenia" in found(evaluation)  # 5 years: limit 1.5, grade 4, critical
    assert "agranulocytosis" in found(evaluation)  # critical: evaluated at every age
    for rule in ("monocytopenia", "pancytopenia", "anc-fall"):
        assert rule in skipped(evaluation)
    note = "Limits for age band 2-6 years (paediatric 1.0.0), not the adult limits."
    assert evaluation.notes == (note,)


def test_an_adult_keeps_the_rule_file_limits_without_note() -> None:
    data = oru(birth="19800101", collected="20250601080000+0000", counts={ANC: "1.2"})
    evaluation = evaluation_of(data, CONTEXT)
    assert found(evaluation)["neutropenia"] == (2, "PM")
    assert evaluation.notes == ()
    assert "age band" not in evaluation.profile


def test_an_unknown_birth_date_uses_the_adult_limits_with_a_warning() -> None:
    outcome = outcome_of(oru(birth="", counts={ANC: "1.2", ALC: "0.9"}), CONTEXT)
    (report,) = outcome.reports
    assert found(report.evaluation) == {"neutropenia": (2, "PM"), "lymphopenia": (1, "PL")}
    (warning,) = [i for i in outcome.issues if "age is not known" in i.message]
    assert warning.severity is Severity.WARNING
    assert "adult limits" in warning.message
    assert str(warning.location) == "PID[1]-7"


def test_a_birth_date_that_cannot_decide_the_band_evaluates_nothing() -> None:
    # born in 2024 (year only), collected mid-2025: 5 to 17 months, 3-12 months or 1-2 years
    data = oru(birth="2024", collected="20250601080000+0000", counts={ANC: "0.9"})
    evaluation = evaluation_of(data, CONTEXT)
    assert found(evaluation) == {}
    assert "not precise enough" in skipped(evaluation)["neutropenia"]
    # the same year, every possible day in one band (6 to 12 years): evaluated
    data = oru(birth="2016", collected="20250601080000+0000", counts={ANC: "0.9"})
    assert "neutropenia" in found(evaluation_of(data, CONTEXT))


def test_a_birth_date_after_the_collection_is_an_unknown_age() -> None:
    data = oru(birth="20250701", collected="20250601080000+0000", counts={ANC: "0.9"})
    evaluation = evaluation_of(data, CONTEXT)
    assert found(evaluation) == {"neutropenia": (3, "PH")}  # the adult limits, warned
    assert "after the collection date" in evaluation.notes[0]


@pytest.mark.parametrize("band_id", list(TABLE))
def test_interpretation_intervals_agree_with_the_finding_limits(band_id: str) -> None:
    """The file's own rule (a band's lower limit is the lowest lower limit of its source
    rows): the low end of a band's interval is its finding limit, so a value is flagged L
    exactly when it is a finding, never L without one."""
    (band,) = [b for b in PROFILE.bands if b.id == band_id]
    for rule, analyte in (
        ("leukopenia", "wbc"),
        ("neutropenia", "neutrophils"),
        ("lymphopenia", "lymphocytes"),
    ):
        limit = band.limits.get(rule)
        interval = next((i for i in band.intervals.values() if i.analyte.value == analyte), None)
        if limit is not None and interval is not None:
            assert interval.low == limit.limit, (band_id, rule)
    high = band.limits.get("leukocytosis")
    wbc = next((i for i in band.intervals.values() if i.analyte.value == "wbc"), None)
    if high is not None and wbc is not None:
        assert wbc.high == high.limit


def test_an_infant_anc_between_limit_and_davis_row_is_neither_l_nor_a_finding() -> None:
    # 7 months, ANC 1.5: not neutropenia (limit 1.0 under 1 year), so not L either
    data = oru(birth="20240115", collected="20240901080000+0000", counts={ANC: "1.5"})
    evaluation = evaluation_of(data, CONTEXT)
    assert "neutropenia" not in found(evaluation)
    (anc,) = [i for v, i in evaluation.interpretations if v.analyte.value == "neutrophils"]
    assert anc.code == "N"

"""Clinical-safety regressions (review of issue 12): a critical value is never dropped,
whatever the patient's age, the precision of their birth date or their own ANC limit."""

from __future__ import annotations

from pathlib import Path

import pytest

from leukofhir.errors import ConfigError, Severity
from leukofhir.rules import load_rule_set
from leukofhir.rules.deployment import load_deployment
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

CONTEXT = make_context()
RULES = load_rule_set()


def test_a_critical_value_is_a_finding_in_a_band_without_a_limit() -> None:
    # day 3 of life: band 0-7 days has no limit for leukopenia or neutropenia
    counts = {WBC: "1.5", ANC: "0.1", ALC: "1.2"}
    data = oru(birth="20250125", collected="20250128102000-0600", counts=counts)
    evaluation = evaluation_of(data, CONTEXT)
    findings = {f.rule_id: f for f in evaluation.findings}
    for rule in ("leukopenia", "neutropenia", "agranulocytosis"):
        assert findings[rule].critical, rule
        assert findings[rule].priority == "PH"
    assert "critical values, which are evaluated at every age" in findings["neutropenia"].text
    # a non-critical value in the same band is still not evaluated, and says why
    counts = {WBC: "2.5", ANC: "0.8", ALC: "3.5"}
    data = oru(birth="20250125", collected="20250128102000-0600", counts=counts)
    evaluation = evaluation_of(data, CONTEXT)
    assert found(evaluation) == {}
    assert "only critical values (< 0.5 10*9/L)" in skipped(evaluation)["neutropenia"]
    assert "only critical values (< 2.0 10*9/L)" in skipped(evaluation)["leukopenia"]


def _warnings(data: bytes, text: str) -> list[str]:
    outcome = outcome_of(data, CONTEXT)
    return [
        f"{i.location}: {i.message}"
        for i in outcome.issues
        if i.severity is Severity.WARNING and text in i.message
    ]


def test_a_birth_date_after_the_collection_is_an_unknown_age_with_a_warning() -> None:
    counts = {WBC: "1.5", ANC: "0.1", ALC: "1.2"}
    data = oru(birth="20250201", collected="20250128102000-0600", counts=counts)
    evaluation = evaluation_of(data, CONTEXT)
    assert {"leukopenia", "neutropenia", "agranulocytosis"} <= set(found(evaluation))
    assert all(f.critical for f in evaluation.findings if f.rule_id != "lymphopenia")
    (warning,) = _warnings(data, "after the collection date")
    assert warning.startswith("PID[1]-7: ")
    assert "adult limits" in warning


def test_a_year_only_birth_date_across_18_evaluates_what_the_bands_agree_on() -> None:
    # born in 2007, collected June 2025: 17 or 18 years (12-18 years or adult)
    counts = {WBC: "3.0", ANC: "0.3", ALC: "0.5"}
    data = oru(birth="2007", collected="20250601102000-0600", counts=counts)
    evaluation = evaluation_of(data, CONTEXT)
    got = found(evaluation)
    # neutropenia: 1.5 in both; agranulocytosis is not, ANC 0.3 is critical: found either way
    assert got["neutropenia"] == (4, "PH")
    assert "leukopenia" in skipped(evaluation)  # 4.5 or 4.3: not the same limit
    assert "not give this finding the same limit" in skipped(evaluation)["leukopenia"]
    (warning,) = _warnings(data, "not precise enough")
    assert warning.startswith("PID[1]-7: ")
    assert "12-18 years to adult" in warning
    assert any("could not be decided" in note for note in evaluation.notes)


def test_a_month_precision_birth_date_is_never_after_the_collection() -> None:
    # born January 2025, collected 28 January 2025: 0 to 27 days (0-7 days or 8-28 days)
    counts = {WBC: "3.0", ANC: "0.3", ALC: "0.5"}
    data = oru(birth="202501", collected="20250128102000-0600", counts=counts)
    evaluation = evaluation_of(data, CONTEXT)
    assert "after the collection" not in " ".join(skipped(evaluation).values())
    assert _warnings(data, "after the collection") == []
    (warning,) = _warnings(data, "not precise enough")
    assert "0-7 days to 8-28 days" in warning
    assert found(evaluation)["neutropenia"][1] == "PH"  # ANC 0.3: critical at every age


def test_an_unknown_age_is_named_in_the_conclusion() -> None:
    data = oru(birth="", counts={WBC: "3.0", ANC: "0.3", ALC: "0.5"})
    (report,) = outcome_of(data, CONTEXT).reports
    (resource,) = [
        e["resource"]
        for e in report.bundle["entry"]
        if e["resource"]["resourceType"] == "DiagnosticReport"
    ]
    conclusion = resource["conclusion"]
    assert "adult limits of the rule set were used because the patient's age is not known" in (
        conclusion
    )
    assert "no birth date was sent" in conclusion


# --- a patient's or a deployment's own ANC limit never hides a critical ANC -------------

LIMITS_HEADER = "system,value,anc_below,unit,basis\n"


def _deployment(tmp_path: Path, patients: str, extra: str = "") -> Path:
    (tmp_path / "limits.csv").write_text(LIMITS_HEADER + patients, encoding="utf-8")
    path = tmp_path / "site.toml"
    path.write_text(
        'name = "riverbend"\nversion = "1"\nsource = "test"\n[patients]\nfile = "limits.csv"\n'
        + extra,
        encoding="utf-8",
    )
    return path


@pytest.mark.parametrize("below", ["0.1", "0.49", "1.51", "10"])
def test_a_patient_file_limit_outside_the_accepted_range_is_refused(
    tmp_path: Path, below: str
) -> None:
    with pytest.raises(ConfigError, match="not an accepted lower ANC limit"):
        load_deployment(_deployment(tmp_path, f"HOSP,P100,{below},10*9/L,typo\n"), RULES)


@pytest.mark.parametrize("below", ["0.2", "2.0"])
def test_a_deployment_anc_limit_outside_the_accepted_range_is_refused(
    tmp_path: Path, below: str
) -> None:
    extra = f'[neutropenia]\nbelow = "{below}"\nsource = "local"\n'
    with pytest.raises(ConfigError, match="not an accepted lower ANC limit"):
        load_deployment(_deployment(tmp_path, "", extra), RULES)


def test_the_accepted_range_ends_are_accepted(tmp_path: Path) -> None:
    rows = "HOSP,P100,0.5,10*9/L,a\nHOSP,P101,1.5,10*9/L,b\n"
    deployment = load_deployment(_deployment(tmp_path, rows), RULES)
    assert len(deployment.patients) == 2


def test_an_input_limit_below_the_critical_limit_is_not_used() -> None:
    obx = "OBX|9|NM|anc-lower-limit^Patient ANC lower limit^99LKF||0.05|K/uL|||||F"
    data = oru(counts={WBC: "4.5", ANC: "0.3", ALC: "1.5"}, extra=(obx,))
    outcome = outcome_of(data, CONTEXT)
    (report,) = outcome.reports
    neutropenia = {f.rule_id: f for f in report.evaluation.findings}["neutropenia"]
    assert neutropenia.critical
    assert "this patient" not in neutropenia.text  # the rule file's limit, not 0.05
    (warning,) = [i for i in outcome.issues if "lower ANC limit" in i.message]
    assert "not an accepted lower ANC limit" in warning.message
    assert "not used" in warning.message
    assert str(warning.location).endswith("-5")

"""A patient's own lower ANC limit (a known Duffy-null phenotype, say) and a deployment
profile (``--profile``): from a file keyed by patient identifier, or from the input
Observation the rule file names; never inferred from anything else."""

from __future__ import annotations

from pathlib import Path

import pytest

from leukofhir.context import Settings
from leukofhir.errors import ConfigError
from leukofhir.rules import load_rule_set
from leukofhir.rules.deployment import load_deployment
from tests.conftest import NOW, make_context
from tests.rules.clinical_messages import ANC, WBC, evaluation_of, found, oru, outcome_of

RULES = load_rule_set()
HEADER = "system,value,anc_below,unit,basis\n"
BASIS = "Duffy-null phenotype Fy(a-b-), blood bank 2024-05-02"


def profile(tmp_path: Path, patients: str = "", extra: str = "") -> Path:
    (tmp_path / "limits.csv").write_text(HEADER + patients, encoding="utf-8")
    path = tmp_path / "site.toml"
    path.write_text(
        'name = "riverbend"\nversion = "2025.1"\nsource = "test"\n'
        '[patients]\nfile = "limits.csv"\n' + extra,
        encoding="utf-8",
    )
    return path


def context_for(path: Path):  # type: ignore[no-untyped-def]
    return make_context(deployment=load_deployment(path, RULES))


def test_a_patient_file_limit_replaces_the_neutropenia_threshold(tmp_path: Path) -> None:
    context = context_for(profile(tmp_path, f'HOSP,P100,1.0,10*9/L,"{BASIS}"\n'))
    # ANC 1.2: neutropenia for an adult (< 1.5), not for this patient (limit 1.0)
    assert "neutropenia" not in found(evaluation_of(oru(counts={ANC: "1.2"}), context))
    evaluation = evaluation_of(oru(counts={ANC: "0.9"}), context)
    (finding,) = [f for f in evaluation.findings if f.rule_id == "neutropenia"]
    assert finding.grade == 3
    assert f"limit < 1.0 10*9/L for this patient ({BASIS})" in finding.text
    (note,) = evaluation.notes
    assert "this patient's own lower ANC limit 1.0" in note
    assert "limits.csv line 2" in note
    # another patient keeps the adult limit
    other = evaluation_of(oru(patient="P200", counts={ANC: "1.2"}), context)
    assert found(other)["neutropenia"] == (2, "PM")


def test_the_limit_used_is_in_the_flag_and_the_conclusion(tmp_path: Path) -> None:
    context = context_for(profile(tmp_path, f'HOSP,P100,1.0,10*9/L,"{BASIS}"\n'))
    (report,) = outcome_of(oru(counts={ANC: "0.9"}), context).reports
    resources = [e["resource"] for e in report.bundle["entry"]]
    (flag,) = [r for r in resources if r["resourceType"] == "Flag"]
    (dr,) = [r for r in resources if r["resourceType"] == "DiagnosticReport"]
    assert "limit < 1.0 10*9/L for this patient" in flag["code"]["text"]
    assert "own lower ANC limit 1.0 10*9/L" in dr["conclusion"]


def test_a_deployment_adult_limit(tmp_path: Path) -> None:
    extra = '[neutropenia]\nbelow = "1.2"\nsource = "local Duffy-aware interval, 2025"\n'
    context = context_for(profile(tmp_path, extra=extra))
    assert "neutropenia" not in found(evaluation_of(oru(counts={ANC: "1.3"}), context))
    evaluation = evaluation_of(oru(counts={ANC: "1.1"}), context)
    assert "neutropenia" in found(evaluation)
    assert "deployment profile riverbend 2025.1" in evaluation.notes[0]
    # children keep their band (the deployment's limit is for adults)
    child = evaluation_of(
        oru(birth="20200101", collected="20250601080000+0000", counts={ANC: "1.3"}), context
    )
    assert "neutropenia" in found(child)


def limit_obx(value: str, unit: str = "10*9/L", note: str = BASIS) -> tuple[str, ...]:
    return (
        f"OBX|9|NM|anc-lower-limit^Patient ANC lower limit^99LKF||{value}|{unit}|||||F",
        f"NTE|1||{note}",
    )


def test_a_limit_sent_as_an_observation_the_rule_file_names() -> None:
    context = make_context()
    data = oru(counts={ANC: "1.2"}, extra=limit_obx("1.0"))
    outcome = outcome_of(data, context)
    (report,) = outcome.reports
    assert "neutropenia" not in found(report.evaluation)
    assert "sent" not in " ".join(i.message for i in outcome.issues)  # no 'not used' note
    assert "from OBX[2])" in report.evaluation.notes[0]  # the 2nd OBX of the report
    # and for a child too, at any age
    child = oru(birth="20200101", collected="20250601080000+0000", counts={ANC: "0.9"})
    evaluation = evaluation_of(
        child[:-1] + b"\r" + "\r".join(limit_obx("0.8")).encode() + b"\r", context
    )
    assert "neutropenia" not in found(evaluation)


@pytest.mark.parametrize(
    ("value", "unit", "why"),
    [
        ("1.0", "mmol/L", "not a known count unit"),
        ("<1.0", "10*9/L", "open bound"),
        ("25", "10*9/L", "is not an accepted lower ANC limit"),
    ],
)
def test_an_unusable_limit_observation_is_not_used_and_said(
    value: str, unit: str, why: str
) -> None:
    outcome = outcome_of(oru(counts={ANC: "1.2"}, extra=limit_obx(value, unit)), make_context())
    (report,) = outcome.reports
    assert "neutropenia" in found(report.evaluation)  # the adult limit, never a guess
    (warning,) = [i for i in outcome.issues if "lower ANC limit" in i.message]
    assert why in warning.message
    assert "not used" in warning.message


@pytest.mark.parametrize(
    ("row", "why"),
    [
        ("HOSP,P100,1.0,10*3/uL,x\n", "unit"),
        ("HOSP,P100,1.0,10*9/L,\n", "no basis"),
        ("HOSP,P100,0,10*9/L,x\n", "not an accepted lower ANC limit"),
        ("HOSP,P100,1.0,10*9/L,x\nHOSP,P100,1.1,10*9/L,y\n", "listed twice"),
        ("HOSP,,1.0,10*9/L,x\n", "no patient identifier"),
    ],
)
def test_a_bad_patient_file_is_refused_at_start(tmp_path: Path, row: str, why: str) -> None:
    with pytest.raises(ConfigError, match=why):
        load_deployment(profile(tmp_path, row), RULES)


def test_a_profile_without_name_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_text('version = "1"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="name"):
        load_deployment(path, RULES)


def test_settings_carry_the_profile_to_workers(tmp_path: Path) -> None:
    path = profile(tmp_path, f'HOSP,P100,1.0,10*9/L,"{BASIS}"\n')
    context = Settings(profile=str(path), notify_critical=True).context(NOW)
    assert context.notify_critical
    assert context.clinical.label == "riverbend 2025.1"
    assert "neutropenia" not in found(evaluation_of(oru(counts={ANC: "1.2"}), context))


def test_deployment_intervals_replace_only_those_they_give(tmp_path: Path) -> None:
    extra = (
        '[[intervals]]\nanalyte = "neutrophils"\nmeasure = "count"\n'
        'low = "1.2"\nhigh = "5.4"\nunit = "10*9/L"\n'
    )
    context = context_for(profile(tmp_path, extra=extra))
    evaluation = evaluation_of(oru(counts={ANC: "1.3", WBC: "3.9"}), context)
    codes = {v.analyte.value: i.code for v, i in evaluation.interpretations}
    assert codes == {"neutrophils": "N", "wbc": "L"}  # ANC by the profile, WBC by the rule file
    assert evaluation.profile == "riverbend 2025.1"


def test_a_patient_limit_lowers_the_anc_interval_of_a_profile_that_has_one(
    tmp_path: Path,
) -> None:
    extra = (
        '[[intervals]]\nanalyte = "neutrophils"\nmeasure = "count"\n'
        'low = "1.8"\nhigh = "7.7"\nunit = "10*9/L"\n'
    )
    context = context_for(profile(tmp_path, f'HOSP,P100,1.0,10*9/L,"{BASIS}"\n', extra))
    evaluation = evaluation_of(oru(counts={ANC: "1.2"}), context)
    assert [i.code for _, i in evaluation.interpretations] == ["N"]  # 1.0-7.7 for this patient
    other = evaluation_of(oru(patient="P200", counts={ANC: "1.2"}), context)
    assert [i.code for _, i in other.interpretations] == ["L"]

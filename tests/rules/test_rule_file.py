"""The packaged rule file against design/RULES.md §2–4, number by number, and its loader."""

from __future__ import annotations

import tomllib
from decimal import Decimal
from importlib import resources
from pathlib import Path

import pytest

from leukofhir.errors import ConfigError
from leukofhir.model import SNOMED, Analyte, Measure
from leukofhir.rules import PancytopeniaRule, RuleSet, ThresholdRule, load_rule_set
from leukofhir.terminology.checkdigits import is_sctid

RULES = load_rule_set()
LOCAL = "https://leukofhir.dev/fhir/CodeSystem/finding"
D = Decimal


def threshold_rule(rule_id: str) -> ThresholdRule:
    rule = RULES.rule(rule_id)
    assert isinstance(rule, ThresholdRule)
    return rule


def test_identity() -> None:
    assert (RULES.id, RULES.version) == ("leukopenia", "1.2.0")
    assert RULES.origin == ""
    assert load_rule_set() is RULES  # read once
    assert [rule.id for rule in RULES.rules] == [
        "leukopenia", "neutropenia", "agranulocytosis", "lymphopenia", "monocytopenia",
        "eosinophilia", "basophilia", "leukocytosis", "pancytopenia", "anc-fall", "wbc-fall",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("rule_id", "kind", "analyte", "threshold", "code"),
    [
        ("leukopenia", "below", Analyte.WBC, "4.3", (SNOMED, "84828003")),
        ("neutropenia", "below", Analyte.NEUTROPHILS, "1.5", (SNOMED, "165517008")),
        ("agranulocytosis", "below", Analyte.NEUTROPHILS, "0.2", (SNOMED, "17182001")),
        ("lymphopenia", "below", Analyte.LYMPHOCYTES, "1.0", (LOCAL, "lymphopenia")),
        ("monocytopenia", "below", Analyte.MONOCYTES, "0.2", (LOCAL, "monocytopenia")),
        ("eosinophilia", "above", Analyte.EOSINOPHILS, "0.5", (SNOMED, "71960002")),
        ("basophilia", "above", Analyte.BASOPHILS, "0.2", (LOCAL, "basophilia")),
        ("leukocytosis", "above", Analyte.WBC, "10.8", (SNOMED, "111583006")),
    ],
)
def test_thresholds_and_codes(
    rule_id: str, kind: str, analyte: Analyte, threshold: str, code: tuple[str, str]
) -> None:
    rule = threshold_rule(rule_id)
    assert (rule.kind, rule.analyte, rule.threshold, rule.unit) == (
        kind, analyte, D(threshold), "10*9/L",
    )  # fmt: skip
    assert (rule.code.system, rule.code.code) == code
    assert rule.code.display == rule.name
    assert isinstance(rule.threshold, Decimal)


def test_ctcae_grades() -> None:
    def grades(rule_id: str) -> list[tuple[int, Decimal]]:
        return [(g.grade, g.below) for g in threshold_rule(rule_id).grades]

    assert grades("leukopenia") == [(4, D("1.0")), (3, D("2.0")), (2, D("3.0")), (1, D("4.3"))]
    assert grades("neutropenia") == [(4, D("0.5")), (3, D("1.0")), (2, D("1.5")), (1, D("1.5"))]
    assert grades("lymphopenia") == [(4, D("0.2")), (3, D("0.5")), (2, D("0.8")), (1, D("1.0"))]
    for ungraded in ("agranulocytosis", "monocytopenia", "eosinophilia", "basophilia"):
        assert not threshold_rule(ungraded).grades
    bands = [(b.band, b.below) for b in threshold_rule("neutropenia").bands]
    assert bands == [("severe", D("0.5")), ("moderate", D("1.0")), ("mild", D("1.5"))]


def test_priorities() -> None:
    assert dict(RULES.grade_priority) == {1: "PL", 2: "PM", 3: "PH", 4: "PH"}
    assert RULES.critical_priority == "PH"
    ungraded = {r.id: r.priority for r in RULES.rules if not getattr(r, "grades", ())}
    assert ungraded == {
        "agranulocytosis": "PH", "monocytopenia": "PL", "eosinophilia": "PL",
        "basophilia": "PL", "leukocytosis": "PL", "pancytopenia": "PH",
        "anc-fall": "PH", "wbc-fall": "PH",
    }  # fmt: skip


def test_critical_limits() -> None:
    limits = [(c.analyte, c.below, c.interpretation) for c in RULES.critical]
    assert limits == [(Analyte.WBC, D("2.0"), "LL"), (Analyte.NEUTROPHILS, D("0.5"), "LL")]


def test_pancytopenia() -> None:
    rule = RULES.rule("pancytopenia")
    assert isinstance(rule, PancytopeniaRule)
    assert rule.requires == "leukopenia"
    assert dict(rule.hemoglobin_below) == {"female": D(12), "male": D(13), "default": D(12)}
    assert (rule.hemoglobin_unit, rule.platelets_below, rule.platelets_unit) == (
        "g/dL", D(150), "10*9/L",
    )  # fmt: skip
    assert (rule.code.system, rule.code.code) == (SNOMED, "127034005")


def test_default_profile_is_the_article() -> None:
    intervals = {
        (i.analyte, i.measure): (i.low, i.high, i.unit) for i in RULES.profile.intervals.values()
    }
    assert intervals == {
        (Analyte.WBC, Measure.COUNT): (D("4.3"), D("10.8"), "10*9/L"),
        (Analyte.LYMPHOCYTES, Measure.PERCENT): (D(20), D(50), "%"),
        (Analyte.NEUTROPHILS, Measure.PERCENT): (D(60), D(66), "%"),
        (Analyte.MONOCYTES, Measure.PERCENT): (D(4), D(8), "%"),
        (Analyte.EOSINOPHILS, Measure.PERCENT): (D("0.1"), D(7), "%"),
        (Analyte.BASOPHILS, Measure.PERCENT): (D("0.1"), D("2.5"), "%"),
    }
    assert RULES.profile.label == "article-adult 1"


def test_every_snomed_id_passes_verhoeff() -> None:
    codes = [rule.code for rule in RULES.rules]
    snomed = [c.code for c in codes if c.system == SNOMED]
    assert sorted(snomed) == sorted(
        ["84828003", "165517008", "17182001", "71960002", "111583006", "127034005"]
    )
    assert all(is_sctid(code) for code in snomed)
    assert all(c.system in (SNOMED, LOCAL) for c in codes)


def test_texts_from_rules_md_section_4() -> None:
    def texts(rule_id: str) -> str:
        rule = RULES.rule(rule_id)
        assert rule is not None
        return " ".join((*rule.considerations, *rule.next_steps)).lower()

    for word in ("viral", "aplastic anemia", "hypersplenism", "myelodysplastic", "leukemia",
                 "hiv", "tuberculosis", "lupus", "crohn", "rheumatoid", "kostmann",
                 "myelokathexis", "b12", "folate", "copper", "zinc", "chemotherapy",
                 "radiation", "multiple sclerosis", "epilepsy", "depression", "antipsychotics",
                 "immunosuppressants", "antibiotics", "addiction", "phenothiazines",
                 "chloramphenicol", "pseudo-leukopenia", "rest and nutrition",
                 "growth factors", "stem cell", "signs of infection"):  # fmt: skip
        assert word in texts("leukopenia"), word
    for word in ("hiv", "tuberculosis", "cancer", "typhoid", "malaria"):
        assert word in texts("lymphopenia")
    for word in ("aplastic anemia", "immunosuppressive", "heavy metal", "bacterial and fungal"):
        assert word in texts("neutropenia")
    assert "aplastic anemia" in texts("monocytopenia")
    assert "corticosteroid" in texts("monocytopenia")
    assert "parasitic" in texts("eosinophilia")
    assert "allergic" in texts("eosinophilia")
    assert "corticosteroid" not in texts("eosinophilia")  # the article's error, corrected
    assert "myeloproliferative" in texts("basophilia")
    assert "hypersensitivity" in texts("basophilia")
    assert "stress" not in texts("basophilia")


def test_deviations_each_with_a_reason() -> None:
    ids = {d.id for d in RULES.deviations}
    assert {
        "neutrophil-percent-interval", "eosinophilia-cause", "basophilia-cause", "local-codes",
        "ctcae-neutropenia-grade-1",
    } <= ids  # fmt: skip
    assert all(d.text and d.reason for d in RULES.deviations)


def test_sources_policy_disclaimer() -> None:
    assert {"article", "rules", "ctcae-v5", "snomed"} <= {s.id for s in RULES.sources}
    source_ids = {s.id for s in RULES.sources}
    assert all(set(rule.sources) <= source_ids and rule.sources for rule in RULES.rules)
    assert {"comparators", "bands", "percentages", "critical", "interpretation"} <= set(
        RULES.policy
    )
    assert "not a diagnosis" in RULES.disclaimer
    assert "\n" not in RULES.disclaimer


def test_thresholds_are_strings_in_the_file() -> None:
    text = resources.files("leukofhir").joinpath("data", "leukopenia-v1.toml").read_text("utf-8")
    data = tomllib.loads(text)
    for rule in data["rules"]:
        for key in ("threshold", "platelets"):
            assert key not in rule or isinstance(rule[key], str)
        for grade in rule.get("grades", []):
            assert isinstance(grade["below"], str)


# --- the loader --------------------------------------------------------------------------

PACKAGED = resources.files("leukofhir").joinpath("data", "leukopenia-v1.toml").read_text("utf-8")


def _load(tmp_path: Path, text: str) -> RuleSet:
    path = tmp_path / "rules.toml"
    path.write_text(text, encoding="utf-8")
    return load_rule_set(path)


def test_a_deployment_rule_file(tmp_path: Path) -> None:
    text = PACKAGED.replace('version = "1.2.0"', 'version = "1.2.0-site"').replace(
        'name = "article-adult"', 'name = "site-paediatric"'
    )
    rules = _load(tmp_path, text)
    assert rules.version == "1.2.0-site"
    assert rules.profile.name == "site-paediatric"
    assert rules.origin.endswith("rules.toml")


@pytest.mark.parametrize(
    ("old", "new", "where"),
    [
        ('threshold = "4.3"  #', "threshold = 4.3  #", "rules[0].threshold"),
        ('threshold = "4.3"  #', 'threshold = "four"  #', "rules[0].threshold"),
        ('code = "84828003"', 'code = "84828004"', "rules[0].code"),
        ('{ grade = 2, below = "3.0" }', '{ grade = 2, below = "0.9" }', "rules[0].grades"),
        ('analyte = "wbc"\nthreshold = "4.3"', 'analyte = "leukocyte"\nthreshold = "4.3"',
         "rules[0].analyte"),
        ('default = "12"', 'other = "12"', "rules[8].hemoglobin"),
        ('requires = "leukopenia"', 'requires = "neutropenia"', "rules[8].requires"),
        ('kind = "pancytopenia"', 'kind = "anemia"', "rules[8].kind"),
        ('priority = "PH"\nsources = ["rules", "snomed", "standard"]',
         'priority = "P1"\nsources = ["rules", "snomed", "standard"]', "rules[2].priority"),
        ('sources = ["article", "rules"]\n', 'sources = ["article", "nowhere"]\n',
         "rules[4].sources"),
        ('L = "Low"\n', "", "interpretations"),
    ],
)  # fmt: skip
def test_bad_rule_files(tmp_path: Path, old: str, new: str, where: str) -> None:
    assert old in PACKAGED
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, PACKAGED.replace(old, new, 1))
    assert str(caught.value.issue.location) == where


def test_not_toml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        _load(tmp_path, "id = ")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot be read"):
        load_rule_set(tmp_path / "absent.toml")

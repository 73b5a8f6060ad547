"""Local codes through user mapping files: a FHIR ConceptMap and a CSV table."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from leukofhir.errors import ConfigError, ErrorCode, Location, Severity
from leukofhir.model import LOINC, Analyte, Coding, Measure
from leukofhir.terminology import build_cbc, load_terminology
from tests.terminology.builders import line, report

MAPPINGS = Path(__file__).parent / "mappings"
CONCEPT_MAP = MAPPINGS / "lab-conceptmap.json"
CSV = MAPPINGS / "lab-map.csv"


def local(code: str, source_system: str = "L", system: str = "") -> Coding:
    return Coding(code, system, "", source_system)


def analyte_of(terminology: Any, coding: Coding, unit: str = "K/uL") -> tuple[Analyte, str] | None:
    cbc = build_cbc(report(line("", "3.2", unit, codes=(coding,))), terminology)
    if not cbc.values:
        return None
    return cbc.values[0].analyte, cbc.values[0].loinc


def test_conceptmap() -> None:
    terminology = load_terminology([CONCEPT_MAP])
    assert terminology.mapping_files == (str(CONCEPT_MAP),)
    assert analyte_of(terminology, local("WBCX")) == (Analyte.WBC, "6690-2")
    assert analyte_of(terminology, local("NEUT%"), "%") == (Analyte.NEUTROPHILS, "770-8")
    # the group's source must match: another system's WBCX is not mapped
    assert analyte_of(terminology, local("WBCX", "99zzz")) is None
    # a FHIR system URI matches a group source URI (R5 "relationship")
    plt = Coding("PLT", "https://lab.example.org/codes")
    assert analyte_of(terminology, plt) == (Analyte.PLATELETS, "777-3")
    # a group without source matches the code in any system
    assert analyte_of(terminology, local("EOS#", "XYZ")) == (Analyte.EOSINOPHILS, "711-2")


def test_conceptmap_non_equivalent_targets_are_skipped_and_noted() -> None:
    terminology = load_terminology([CONCEPT_MAP])
    assert analyte_of(terminology, local("LYMPHS")) is None
    assert analyte_of(terminology, local("HGB-NM"), "g/dL") is None
    notes = terminology.issues
    assert [n.severity for n in notes] == [Severity.INFORMATION] * 2
    assert "'LYMPHS' → '731-0' is wider" in notes[0].message
    assert notes[0].location == Location(expression="ConceptMap.group[0].element[2].target[0].code")


def test_csv() -> None:
    terminology = load_terminology([CSV])
    assert analyte_of(terminology, local("WBCX")) == (Analyte.WBC, "6690-2")
    assert analyte_of(terminology, local("ANC", "99zzz")) == (Analyte.NEUTROPHILS, "751-8")
    assert analyte_of(terminology, local("ANC", "L")) is None
    assert analyte_of(terminology, local("MONO#", "anything")) == (Analyte.MONOCYTES, "742-7")
    assert not terminology.issues


def test_both_files_merge() -> None:
    terminology = load_terminology([CONCEPT_MAP, CSV])
    assert analyte_of(terminology, local("ANC", "99zzz")) == (Analyte.NEUTROPHILS, "751-8")
    assert analyte_of(terminology, local("NEUT%"), "%") == (Analyte.NEUTROPHILS, "770-8")


def test_mapped_value_is_normalised_like_a_loinc_one() -> None:
    terminology = load_terminology([CSV])
    cbc = build_cbc(report(line("", "4300", "/uL", codes=(local("WBCX"),))), terminology)
    (value,) = cbc.values
    assert (value.measure, str(value.number), value.unit) == (Measure.COUNT, "4.300", "10*9/L")


def test_loinc_coding_wins_over_a_local_mapping() -> None:
    terminology = load_terminology([CSV])
    codes = (local("WBCX"), Coding("26464-8", LOINC))
    cbc = build_cbc(report(line("", "3.2", "K/uL", codes=codes)), terminology)
    assert cbc.values[0].loinc == "26464-8"


def test_a_never_code_beats_a_local_mapping() -> None:
    terminology = load_terminology([CSV])
    codes = (local("WBCX"), Coding("58410-2", LOINC))
    cbc = build_cbc(report(line("", "3.2", "K/uL", codes=codes)), terminology)
    assert not cbc.values
    assert len(cbc.unmapped) == 1


def test_no_mapping_files_is_the_packaged_terminology() -> None:
    assert load_terminology() is load_terminology(())
    assert not load_terminology().local


# --- bad files ---------------------------------------------------------------------------


def _write(tmp_path: Path, name: str, content: str) -> Path:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    return path


def _conceptmap(
    tmp_path: Path, target: dict[str, str], group: dict[str, Any] | None = None
) -> Path:
    group = group or {"source": "L", "target": LOINC}
    group = {**group, "element": [{"code": "X1", "target": [target]}]}
    return _write(
        tmp_path, "map.json", json.dumps({"resourceType": "ConceptMap", "group": [group]})
    )


def _error(path: Path) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load_terminology([path])
    assert str(path) in caught.value.issue.message
    return caught.value


@pytest.mark.parametrize(
    ("loinc", "why"),
    [
        ("74398-9", "neutrophils in cord blood"),
        ("58410-2", "a CBC panel code"),
        ("71676-1", "a neutrophil fraction"),
        ("2345-7", ""),
        ("6690-3", ""),
    ],
)
def test_conceptmap_to_a_code_that_is_no_cbc_field(tmp_path: Path, loinc: str, why: str) -> None:
    error = _error(_conceptmap(tmp_path, {"code": loinc, "equivalence": "equivalent"}))
    assert f"{loinc!r} is not a CBC field LOINC code" in error.issue.message
    assert why in error.issue.message
    assert error.issue.location == Location(
        expression="ConceptMap.group[0].element[0].target[0].code"
    )


@pytest.mark.parametrize(
    ("loinc", "line_number"), [("74398-9", 3), ("57021-8", 3), ("71676-1", 3), ("9999-9", 3)]
)
def test_csv_to_a_code_that_is_no_cbc_field(tmp_path: Path, loinc: str, line_number: int) -> None:
    path = _write(
        tmp_path, "map.csv", f"source_system,source_code,loinc\nL,OK,6690-2\nL,X,{loinc}\n"
    )
    error = _error(path)
    assert error.issue.location == Location(expression=f"line {line_number}")


def test_conceptmap_target_system_must_be_loinc(tmp_path: Path) -> None:
    path = _conceptmap(tmp_path, {"code": "6690-2", "equivalence": "equivalent"},
                       {"source": "L", "target": "http://snomed.info/sct"})  # fmt: skip
    assert _error(path).issue.location == Location(expression="ConceptMap.group[0].target")


def test_conflicting_mappings(tmp_path: Path) -> None:
    path = _write(tmp_path, "map.csv", "source_system,source_code,loinc\nL,X,6690-2\nL,X,751-8\n")
    assert _error(path).issue.code is ErrorCode.DUPLICATE_KEY
    # the same mapping twice is fine
    path = _write(tmp_path, "ok.csv", "source_system,source_code,loinc\nL,X,6690-2\nL,X,6690-2\n")
    assert load_terminology([path]).local[("L", "X")].loinc == "6690-2"


def test_conflict_across_files(tmp_path: Path) -> None:
    other = _write(tmp_path, "other.csv", "source_system,source_code,loinc\nL,WBCX,804-5\n")
    with pytest.raises(ConfigError, match="maps to both 6690-2"):
        load_terminology([CSV, other])


@pytest.mark.parametrize(
    ("name", "content", "where"),
    [
        ("a.json", "{not json", "line 1, column 2"),
        ("a.json", '{"resourceType": "ValueSet"}', "resourceType"),
        ("a.json", '{"resourceType": "ConceptMap", "group": {}}', "ConceptMap.group"),
        (
            "a.json",
            '{"resourceType": "ConceptMap", "group": [{"target": "http://loinc.org",'
            ' "element": [{"target": []}]}]}',
            "ConceptMap.group[0].element[0].code",
        ),
        ("a.csv", "code,loinc\nX,6690-2\n", "line 1"),
        ("a.csv", "source_system,source_code,loinc\nL,X\n", "line 2"),
        ("a.csv", "source_system,source_code,loinc\nL,,6690-2\n", "line 2"),
        ("a.csv", "# only a comment\n", "line 1"),
        ("a.txt", "source_system,source_code,loinc\n", ""),
    ],
)
def test_malformed_files(tmp_path: Path, name: str, content: str, where: str) -> None:
    error = _error(_write(tmp_path, name, content))
    assert str(error.issue.location) == where
    assert error.issue.severity is Severity.ERROR


def test_missing_file(tmp_path: Path) -> None:
    error = _error(tmp_path / "absent.csv")
    assert "cannot be read" in error.issue.message


def test_csv_with_bom_and_spaces(tmp_path: Path) -> None:
    path = tmp_path / "bom.csv"
    path.write_text(
        "\ufeffsource_system , source_code , loinc\n L , X , 6690-2 \n", encoding="utf-8"
    )
    assert load_terminology([path]).local[("L", "X")].loinc == "6690-2"

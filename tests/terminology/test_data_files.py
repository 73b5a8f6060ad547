"""The packaged terminology tables against design/RULES.md §1, code by code."""

from __future__ import annotations

import re
import tomllib
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from leukofhir.model import Analyte, Measure
from leukofhir.terminology import load_terminology
from leukofhir.terminology.checkdigits import is_loinc
from leukofhir.terminology.tables import normalise_unit

RULES_MD = Path(__file__).resolve().parents[3] / "shared" / "design" / "RULES.md"

# RULES.md §1, transcribed: (analyte, measure) → codes
EXPECTED = {
    (Analyte.WBC, Measure.COUNT): {"6690-2", "804-5", "26464-8", "33256-9", "49498-9"},
    (Analyte.NEUTROPHILS, Measure.COUNT): {"751-8", "753-4", "26499-4"},
    (Analyte.NEUTROPHILS, Measure.PERCENT): {"770-8", "23761-0", "26511-6"},
    (Analyte.SEGMENTED_NEUTROPHILS, Measure.COUNT): {"768-2", "30451-9"},
    (Analyte.SEGMENTED_NEUTROPHILS, Measure.PERCENT): {"32200-8", "769-0", "26505-8"},
    (Analyte.BAND_NEUTROPHILS, Measure.COUNT): {"30229-9", "763-3", "26507-4"},
    (Analyte.BAND_NEUTROPHILS, Measure.PERCENT): {"35332-6", "764-1", "26508-2"},
    (Analyte.LYMPHOCYTES, Measure.COUNT): {"731-0", "732-8", "26474-7"},
    (Analyte.LYMPHOCYTES, Measure.PERCENT): {"736-9", "737-7", "26478-8"},
    (Analyte.MONOCYTES, Measure.COUNT): {"742-7", "743-5", "26484-6"},
    (Analyte.MONOCYTES, Measure.PERCENT): {"5905-5", "744-3", "26485-3"},
    (Analyte.EOSINOPHILS, Measure.COUNT): {"711-2", "712-0", "26449-9"},
    (Analyte.EOSINOPHILS, Measure.PERCENT): {"713-8", "714-6", "26450-7"},
    (Analyte.BASOPHILS, Measure.COUNT): {"704-7", "705-4", "26444-0"},
    (Analyte.BASOPHILS, Measure.PERCENT): {"706-2", "707-0", "30180-4"},
    (Analyte.HEMOGLOBIN, Measure.MASS_CONCENTRATION): {"718-7"},
    (Analyte.PLATELETS, Measure.COUNT): {"777-3", "26515-7"},
}
PANELS = {"58410-2", "57021-8", "57022-6", "57023-4", "57782-5", "24318-8", "24317-0"}
PANELS |= {"69742-5", "69738-3"}
NEVER = PANELS | {"74398-9", "71676-1"}


def _data(name: str) -> dict[str, Any]:
    text = resources.files("leukofhir").joinpath("data", name).read_text(encoding="utf-8")
    return tomllib.loads(text)


def test_fields_are_exactly_the_rules_table() -> None:
    terminology = load_terminology()
    found: dict[tuple[Analyte, Measure], set[str]] = {}
    for code, field in terminology.fields.items():
        found.setdefault((field.analyte, field.measure), set()).add(code)
        assert field.loinc == code
    assert found == EXPECTED


def test_never_list_is_exact_and_disjoint() -> None:
    terminology = load_terminology()
    assert set(terminology.never) == NEVER
    assert not set(terminology.never) & set(terminology.fields)
    assert all(reason for reason in terminology.never.values())


def test_every_loinc_code_passes_the_check_digit() -> None:
    terminology = load_terminology()
    codes = {*terminology.fields, *terminology.never}
    codes |= {d.loinc for d in terminology.derivations}
    assert codes
    assert all(is_loinc(code) for code in codes), sorted(c for c in codes if not is_loinc(c))


@pytest.mark.skipif(not RULES_MD.is_file(), reason="design/RULES.md is not beside the repo")
def test_rules_md_codes_all_in_the_tables() -> None:
    text = RULES_MD.read_text(encoding="utf-8")
    section = text.split("## 1.")[1].split("Units are normalised")[0]
    codes = set(re.findall(r"\b\d{3,5}-\d\b", section))
    terminology = load_terminology()
    assert codes == set(terminology.fields) | set(terminology.never)


def test_derived_counts_use_the_automated_count_codes() -> None:
    terminology = load_terminology()
    assert {d.analyte: d.loinc for d in terminology.derivations} == {
        Analyte.NEUTROPHILS: "751-8",
        Analyte.LYMPHOCYTES: "731-0",
        Analyte.MONOCYTES: "742-7",
        Analyte.EOSINOPHILS: "711-2",
        Analyte.BASOPHILS: "704-7",
    }
    for derivation in terminology.derivations:
        field = terminology.fields[derivation.loinc]
        assert (field.analyte, field.measure) == (derivation.analyte, Measure.COUNT)
    parts = [part.analyte for part in terminology.anc_parts]
    assert parts == [Analyte.SEGMENTED_NEUTROPHILS, Analyte.BAND_NEUTROPHILS]


def test_preference_is_only_nrbc_corrected_over_automated_wbc() -> None:
    terminology = load_terminology()
    preferred = {
        code: f.preferred_over for code, f in terminology.fields.items() if f.preferred_over
    }
    assert preferred == {"33256-9": frozenset({"6690-2"})}


def test_unit_table_is_exactly_the_rules_table() -> None:
    units = _data("units-v1.toml")["units"]
    by_factor = {(g["measure"], g["factor"]): set(g["spellings"]) for g in units}
    assert by_factor[("count", "1")] == {
        "10*3/uL", "10^3/uL", "x10E3/uL", "K/uL", "K/µL", "THOU/uL", "10*3/mm3",
        "10*9/L", "10^9/L", "x10^9/L", "G/L",
    }  # fmt: skip
    assert by_factor[("count", "0.001")] == {
        "/uL", "/mm3", "cells/uL", "cells/mm3", "/cmm", "/cumm", "{cells}/uL",
    }  # fmt: skip
    assert by_factor[("percent", "1")] == {"%"}
    assert by_factor[("mass-concentration", "1")] == {"g/dL"}
    assert by_factor[("mass-concentration", "0.1")] == {"g/L"}
    assert by_factor[("mass-concentration", "1.61145")] == {"mmol/L"}
    assert all(isinstance(g["factor"], str) for g in units)  # Decimal, never float


def test_hemoglobin_molar_factor() -> None:
    # monomer molar mass 16 114.5 g/mol: 1 mmol/L = 16.1145 g/L; 1 g/dL = 0.6206 mmol/L
    terminology = load_terminology()
    unit = terminology.units["mass-concentration"][normalise_unit("mmol/L")]
    assert unit.factor == Decimal("16114.5") / Decimal(10000)
    assert (Decimal(1) / unit.factor).quantize(Decimal("0.0001")) == Decimal("0.6206")


def test_plausibility_limits() -> None:
    terminology = load_terminology()
    assert terminology.percent_max == Decimal(100)
    assert terminology.differential_sum == (Decimal(90), Decimal(110))
    assert terminology.fields["6690-2"].max == Decimal(1000)
    assert terminology.fields["751-8"].max == Decimal(1000)
    assert terminology.fields["777-3"].max == Decimal(10000)
    assert terminology.fields["718-7"].max == Decimal(40)
    assert terminology.fields["770-8"].max is None  # percents: percent_max


def test_statuses() -> None:
    terminology = load_terminology()
    assert terminology.status_use == {
        "F", "C", "A", "P", "U", "", "final", "amended", "corrected", "preliminary",
    }  # fmt: skip
    for refused in ("X", "W", "D", "cancelled", "entered-in-error", "I", "registered"):
        assert refused in terminology.status_refuse
    assert terminology.status_refuse["X"] == "cancelled"


def test_tables_are_read_only_and_loaded_once() -> None:
    first, second = load_terminology(), load_terminology()
    assert first is second
    with pytest.raises(TypeError):
        first.fields["1-8"] = first.fields["6690-2"]  # type: ignore[index]
    assert first.version == "cbc-loinc-v1"
    assert first.units_version == "units-v1"

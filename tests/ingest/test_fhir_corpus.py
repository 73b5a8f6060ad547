"""The shared corpus of public R4 resources (../shared/corpus/fhir): each reads without an
exception; the Swiss WBC example is 2.9 × 10^9/L; CIBMTR cord-blood neutrophils stay unmapped."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from leukofhir.ingest.fhir import read_fhir
from leukofhir.model import LabMessage
from leukofhir.terminology import build_cbc, load_terminology

CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "corpus" / "fhir"
FILES = sorted(CORPUS.glob("*.json")) if CORPUS.is_dir() else []

pytestmark = pytest.mark.skipif(not FILES, reason="shared FHIR corpus not present")


def read(name: str) -> LabMessage:
    (unit,) = read_fhir((CORPUS / name).read_bytes(), "Europe/Zurich")
    assert unit.error is None
    assert unit.message is not None
    return unit.message


@pytest.mark.parametrize("path", FILES, ids=lambda path: path.name)
def test_every_file_reads_into_units(path: Path) -> None:
    found = list(read_fhir(path.read_bytes(), "Europe/Zurich"))
    assert found
    for unit in found:
        assert (unit.message is None) != (unit.error is None)
        if unit.message is not None:
            assert unit.message.reports


def test_swiss_wbc_example_is_2_9() -> None:
    message = read("chlab__Observation-ExampleObservationWBC_from-md.json")
    (obs,) = message.reports[0].observations
    assert obs.codes[0].code == "6690-2"
    assert obs.value is not None
    assert obs.value.number == Decimal("2.9")
    assert obs.unit is not None
    assert obs.unit.code == "10*9/L"
    cbc = build_cbc(message.reports[0], load_terminology())
    (value,) = cbc.values
    assert value.number == Decimal("2.9")


def test_cord_blood_neutrophils_are_read_and_left_unmapped() -> None:
    message = read("cibmtr__Observation-NeutrophilsObservation.json")
    (obs,) = message.reports[0].observations
    assert obs.codes[0].code == "74398-9"
    cbc = build_cbc(message.reports[0], load_terminology())
    assert cbc.values == ()
    assert cbc.unmapped == (obs,)


def test_us_core_neutrophil_percent_without_unit_code() -> None:
    message = read("uscore__observation-neutrophils_hist2023.json")
    (obs,) = message.reports[0].observations
    assert obs.value is not None
    assert obs.value.text == "40.0"
    assert obs.reference_range == "37.0-67.0"
    (value,) = build_cbc(message.reports[0], load_terminology()).values
    assert value.usable


def test_panel_and_report_without_their_members_warn_per_reference() -> None:
    message = read("chlab__Observation-ExampleObservationCBCPanel.json")
    assert message.reports[0].observations == ()
    assert len(message.issues) == 10
    assert str(message.issues[0].location) == "Observation.hasMember[0]"

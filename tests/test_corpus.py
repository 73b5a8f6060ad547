"""Every public message of ../shared/corpus/hl7v2 (59 messages in 40 files) gives Bundles or
located OperationOutcomes, never a traceback.  Skipped when ../shared is absent."""

from __future__ import annotations

from pathlib import Path

import pytest
from fhir.resources.R4B.bundle import Bundle

from leukofhir.context import Context
from leukofhir.errors import Severity
from leukofhir.pipeline import Disposition, process
from tests.conftest import SHARED

CORPUS = SHARED / "corpus" / "hl7v2"
FILES = sorted(CORPUS.glob("*.hl7")) if CORPUS.exists() else []


@pytest.mark.skipif(not FILES, reason="../shared/corpus/hl7v2 is not here")
@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_corpus_message(path: Path, context: Context) -> None:
    for outcome in process(path.read_bytes(), context):
        if outcome.disposition is Disposition.REJECTED:
            errors = [i for i in outcome.issues if i.severity in {Severity.ERROR, Severity.FATAL}]
            assert errors, "a rejected message says why"
            assert all(str(i.location) or "no HL7" in i.message for i in errors), outcome.issues
            assert not any("leukofhir failed" in i.message for i in errors), outcome.issues
        for report in outcome.reports:
            Bundle.model_validate(report.bundle)


@pytest.mark.skipif(not FILES, reason="../shared/corpus/hl7v2 is not here")
def test_corpus_counts(context: Context) -> None:
    """The manifest's counts: 59 messages; the CBC messages are processed."""
    outcomes = {path.name: list(process(path.read_bytes(), context)) for path in FILES}
    assert sum(len(v) for v in outcomes.values()) >= 59
    for name in (
        "msfc__LAB-ORU-1.hl7",
        "msfc__LAB-ORU-2.hl7",
        "msfc__LRI_2.0-NG_CBC_Typ_Message.hl7",
    ):
        assert any(o.disposition is Disposition.PROCESSED for o in outcomes[name]), name
    assert [o.disposition for o in outcomes["lfh__sample_win.hl7"]] == [Disposition.REJECTED]


FHIR_CORPUS = SHARED / "corpus" / "fhir"
FHIR_FILES = sorted(FHIR_CORPUS.glob("*.json")) if FHIR_CORPUS.exists() else []


@pytest.mark.skipif(not FHIR_FILES, reason="../shared/corpus/fhir is not here")
@pytest.mark.parametrize("path", FHIR_FILES, ids=lambda p: p.name)
def test_fhir_corpus_resource(path: Path, context: Context) -> None:
    for outcome in process(path.read_bytes(), context):
        assert not any("leukofhir failed" in i.message for i in outcome.issues), outcome.issues
        for report in outcome.reports:
            Bundle.model_validate(report.bundle)


@pytest.mark.skipif(not FHIR_FILES, reason="../shared/corpus/fhir is not here")
def test_swiss_wbc_of_2_9_is_leukopenia_grade_2(context: Context) -> None:
    path = FHIR_CORPUS / "chlab__Observation-ExampleObservationWBC_from-md.json"
    (outcome,) = process(path.read_bytes(), context)
    grades = {f.rule_id: f.grade for r in outcome.reports for f in r.evaluation.findings}
    assert grades["leukopenia"] == 2


@pytest.mark.skipif(not FHIR_FILES, reason="../shared/corpus/fhir is not here")
def test_cord_blood_neutrophils_are_never_the_anc(context: Context) -> None:
    path = FHIR_CORPUS / "cibmtr__Observation-NeutrophilsObservation.json"
    for outcome in process(path.read_bytes(), context):
        for report in outcome.reports:
            assert all(v.loinc != "74398-9" for v in report.cbc.values)
            assert not any(
                f.rule_id in {"neutropenia", "agranulocytosis"} for f in report.evaluation.findings
            )

"""The FHIR sample inputs in sample_messages/: each reads as expected and gives the findings
it was written for (computed by hand from RULES.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from leukofhir.ingest.fhir import read_fhir
from leukofhir.rules import evaluate, load_rule_set
from leukofhir.terminology import build_cbc, load_terminology

ROOT = Path(__file__).resolve().parents[2] / "sample_messages"

# file → per unit: (observations read, findings' texts) or the FHIRPath of its error
EXPECTED: dict[str, list[tuple[int, list[str]] | str]] = {
    "f01-single-observation-wbc-leukopenic.json": [(1, ["Leukopenia, CTCAE grade 1"])],
    "f02-collection-report-relative-refs.json": [(8, [])],
    "f03-transaction-urn-uuid-neutropenia.json": [
        (3, ["Leukopenia, CTCAE grade 1", "Neutropenia, CTCAE grade 3 (moderate)"])
    ],
    "f04-searchset-absolute-urls-leukocytosis.json": [(2, ["Leukocytosis"])],
    "f05-report-contained-results-lymphopenia.json": [(3, ["Lymphopenia, CTCAE grade 2"])],
    "f06-document-panel-hasmember-leukopenia.json": [(3, ["Leukopenia, CTCAE grade 2"])],
    "f07-bulk-export.ndjson": [
        (3, []),
        (
            4,
            [
                "Leukopenia, CTCAE grade 3, critical value",
                "Neutropenia, CTCAE grade 4 (severe), critical value",
                "Pancytopenia, critical value",
            ],
        ),
    ],
    "f08-percent-only-differential.json": [(5, [])],
    "f09-bad-value-type-and-good-report.json": [
        "Bundle.entry[0].resource.valueQuantity.value",
        (2, []),
    ],
    "f10-message-comparator-preliminary-r5-element.json": [
        (1, ["Leukopenia, CTCAE grade 4, critical value"])
    ],
}


@pytest.mark.parametrize(("name", "expected"), EXPECTED.items(), ids=list(EXPECTED))
def test_sample(name: str, expected: list[tuple[int, list[str]] | str]) -> None:
    path = ROOT / name
    terminology, rule_set = load_terminology(), load_rule_set()
    found: list[tuple[int, list[str]] | str] = []
    for unit in read_fhir(path.read_bytes(), "Europe/Zurich"):
        if unit.error is not None:
            found.append(str(unit.error.location))
            continue
        assert unit.message is not None
        (lab_report,) = unit.message.reports
        sex = unit.message.patient.gender if unit.message.patient else ""
        evaluation = evaluate(build_cbc(lab_report, terminology), rule_set, sex=sex)
        found.append(
            (len(lab_report.observations), [finding.text for finding in evaluation.findings])
        )
    assert found == expected

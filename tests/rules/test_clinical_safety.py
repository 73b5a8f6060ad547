"""Clinical-safety regressions (review of issue 12): a critical value is never dropped,
whatever the patient's age, the precision of their birth date or their own ANC limit."""

from __future__ import annotations

from leukofhir.errors import Severity
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
    counts = {WBC: "2.5", ANC: "0.8", ALC: "1.2"}
    data = oru(birth="20250125", collected="20250128102000-0600", counts=counts)
    evaluation = evaluation_of(data, CONTEXT)
    assert found(evaluation) == {}
    assert "only critical values (< 0.5 10*9/L)" in skipped(evaluation)["neutropenia"]
    assert "only critical values (< 2.0 10*9/L)" in skipped(evaluation)["leukopenia"]

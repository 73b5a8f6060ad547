"""DiagnosticReport: one per input report, with the conclusion a clinician reads."""

from __future__ import annotations

from leukofhir.emit.datatypes import (
    Json,
    coding,
    concept,
    conditional_update,
    identifier,
    source_identifier,
    text,
)
from leukofhir.errors import ErrorCode, Issue, warning
from leukofhir.model import (
    LOINC,
    Analyte,
    Cbc,
    CbcValue,
    Coding,
    Evaluation,
    Identifier,
    LabObservation,
    LabReport,
    Measure,
)

LAB = {
    "coding": [
        {
            "system": "http://terminology.hl7.org/CodeSystem/v2-0074",
            "code": "LAB",
            "display": "Laboratory",
        }
    ]
}
CBC_WITH_DIFFERENTIAL = Coding("57021-8", LOINC, "CBC W Auto Differential panel - Blood")
CBC_WITHOUT_DIFFERENTIAL = Coding("58410-2", LOINC, "CBC panel - Blood by Automated count")

# HL7 table 0123 (OBR-25) → DiagnosticReport.status
REPORT_STATUS = {
    "F": "final",
    "C": "corrected",
    "P": "preliminary",
    "R": "partial",
    "A": "partial",
    "O": "registered",
    "I": "registered",
    "S": "registered",
    "X": "cancelled",
}


DIAGNOSTIC_REPORT_STATUSES = frozenset(
    {
        "registered",
        "partial",
        "preliminary",
        "final",
        "amended",
        "corrected",
        "appended",
        "cancelled",
        "entered-in-error",
        "unknown",
    }
)


def report_status(
    report: LabReport, issues: list[Issue], *, observations: list[LabObservation]
) -> str:
    """OBR-25 (table 0123), or a FHIR DiagnosticReport's own status.  A FHIR report built
    from loose Observations takes the least final of their statuses; ``W`` (not in table
    0123) and an empty OBR-25 are warned about and read as 'unknown' (the V2-to-FHIR IG
    calls an empty OBR-25 an error; we keep the result)."""
    sent = report.status.strip()
    if sent in DIAGNOSTIC_REPORT_STATUSES:
        return sent
    if status := REPORT_STATUS.get(sent.upper()):
        return status
    if not sent and observations and report.location.expression:  # FHIR, no report sent
        statuses = {obs.status for obs in observations}
        if "preliminary" in statuses:
            return "preliminary"
        if statuses <= {"final", "amended", "corrected"}:
            return "corrected" if "corrected" in statuses else "final"
        return "unknown"
    what = f"'{report.status}' is not a table 0123 code" if sent else "is empty"
    issues.append(
        warning(
            ErrorCode.TABLE_VALUE_NOT_FOUND,
            f"OBR-25 result status {what}; the DiagnosticReport status is 'unknown'",
            report.location.at(25),
        )
    )
    return "unknown"


def report_identifiers(report: LabReport, digest: str) -> list[Json]:
    idents = [
        identifier(order, "order") for order in (report.filler_order, report.placer_order) if order
    ]
    if not idents and (known := source_identifier(report.reference)) is not None:
        idents.append(known)
    if not idents:
        idents.append(identifier(Identifier(f"{digest}^{report.location}"), "report"))
    return idents


def build_report(
    report: Cbc,
    evaluation: Evaluation,
    *,
    digest: str,
    subject: Json | None,
    status: str,
    results: list[Json],
) -> tuple[Json, Json]:
    lab = report.report
    idents = report_identifiers(lab, digest)
    resource: Json = {
        "resourceType": "DiagnosticReport",
        "identifier": idents,
        "status": status,
        "category": [LAB],
        "code": concept(_panel_code(report), lab.code_text),
    }
    if subject:
        resource["subject"] = subject
    if lab.effective:
        resource["effectiveDateTime"] = lab.effective
    if lab.issued:
        resource["issued"] = lab.issued
    resource["result"] = results
    resource["conclusion"] = conclusion(evaluation)
    if evaluation.findings:
        resource["conclusionCode"] = [
            {"coding": [coding(f.code)], "text": text(f.text)} for f in evaluation.findings
        ]
    return resource, conditional_update("DiagnosticReport", idents[0])


def _panel_code(report: Cbc) -> tuple[Coding, ...]:
    loinc = tuple(c for c in report.report.codes if c.system == LOINC)
    if loinc:
        return report.report.codes
    has_differential = any(
        v.measure is not Measure.MASS_CONCENTRATION and v.analyte.value not in {"wbc", "platelets"}
        for v in report.values
    )
    panel = CBC_WITH_DIFFERENTIAL if has_differential else CBC_WITHOUT_DIFFERENTIAL
    return (panel, *report.report.codes)


def conclusion(evaluation: Evaluation) -> str:
    """Findings with grade and evidence, their considerations, what was not evaluated."""
    lines: list[str] = []
    for finding in evaluation.findings:
        evidence = "; ".join(_evidence(e.value, e.threshold) for e in finding.evidence)
        lines.append(finding.text + (f" ({evidence})" if evidence else "") + ".")
        if finding.considerations:
            lines.append("  Consider: " + "; ".join(finding.considerations) + ".")
        if finding.next_steps:
            lines.append("  Next steps: " + "; ".join(finding.next_steps) + ".")
    if not evaluation.findings:
        lines.append(
            "No white-cell finding among the rules that could be evaluated (see below)."
            if evaluation.not_evaluated
            else "No leukopenia or other white-cell finding in this CBC."
        )
    for item in evaluation.not_evaluated:
        lines.append(f"Not evaluated: {item.rule_id}: {item.reason}")
    lines.extend(evaluation.notes)
    if evaluation.disclaimer:
        lines.append(evaluation.disclaimer)
    lines.append(
        f"Rule set {evaluation.rule_set_id} {evaluation.rule_set_version}"
        + (f"; reference intervals {evaluation.profile}." if evaluation.profile else ".")
    )
    return text("\n".join(lines))


def _evidence(value: CbcValue, threshold: str) -> str:
    """``WBC 2.99 10*9/L < 3.0 …``: what was compared with what."""
    name = "WBC" if value.analyte is Analyte.WBC else value.analyte.value.replace("-", " ")
    if value.measure is Measure.COUNT and value.analyte is not Analyte.WBC:
        name += " count"
    shown = value.shown or "-"
    derived = " (derived)" if value.derived else ""
    return f"{name}{derived} {shown} {threshold}"

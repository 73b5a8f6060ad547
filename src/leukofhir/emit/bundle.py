"""The transaction Bundle for one report: Patient, Observations, DiagnosticReport, Flags,
Provenance, in that order, with deterministic ``urn:uuid`` fullUrls."""

from __future__ import annotations

from collections import Counter

from leukofhir.emit.datatypes import Json, reference, urn, uuid_value
from leukofhir.emit.flag import build_flag, flag_identifier
from leukofhir.emit.observation import build_derived, build_observation, line_key
from leukofhir.emit.patient import build_patient, patient_key
from leukofhir.emit.provenance import build_provenance, rule_set_uri
from leukofhir.emit.report import build_report, report_status
from leukofhir.errors import ErrorCode, Issue, warning
from leukofhir.model import Cbc, CbcValue, Evaluation, LabMessage

# DiagnosticReport.status → the Observation.status a derived count gets
DERIVED_STATUS = {
    "partial": "preliminary",
    "registered": "registered",
    "final": "final",
    "corrected": "corrected",
    "amended": "amended",
    "preliminary": "preliminary",
    "cancelled": "cancelled",
    "entered-in-error": "entered-in-error",
}


def value_key(value: CbcValue) -> str:
    """Names one CBC value within its report: the line it came from, or what it derives."""
    if value.observation is not None:
        return str(value.observation.location)
    return f"derived:{value.analyte.value}:{value.measure.value}"


def build_bundle(
    message: LabMessage,
    cbc: Cbc,
    evaluation: Evaluation,
    *,
    recorded: str,
    issues: list[Issue],
) -> Json:
    digest, report = message.digest, cbc.report
    seed = f"{digest}|{report.location}"
    entries: list[Json] = []

    def add(full_url: str, pair: tuple[Json, Json]) -> None:
        entries.append({"fullUrl": full_url, "resource": pair[0], "request": pair[1]})

    subject = None
    if message.patient is not None:
        patient_url = urn("Patient", seed)
        add(patient_url, build_patient(message.patient))
        subject = reference(patient_url)

    keys = {id(value): value_key(value) for value in (*cbc.values, *cbc.superseded)}

    def key_of(value: CbcValue) -> str:  # the rules hand back our own values: look them up
        return keys.get(id(value)) or value_key(value)

    urls = {key: urn("Observation", seed, key) for key in keys.values()}
    interpretations = {key_of(value): found for value, found in evaluation.interpretations}
    sent = [obs for obs in report.observations if str(obs.location) in urls]  # message order
    counts = Counter(line_key(obs) for obs in sent)
    for obs in sent:
        key = str(obs.location)
        repeated = counts[line_key(obs)] > 1
        if repeated:
            issues.append(
                warning(
                    ErrorCode.DUPLICATE_KEY,
                    f"{obs.location} shares OBX-3 and OBX-4 with another line of"
                    f" {report.location}; its Observation identifier adds its position",
                    obs.location.at(4),
                )
            )
        add(
            urls[key],
            build_observation(
                obs,
                report,
                digest=digest,
                subject=subject,
                interpretation=interpretations.get(key),
                issues=issues,
                repeated=repeated,
            ),
        )
    status = report_status(report, issues)
    for value in cbc.values:
        if value.derived:
            key = key_of(value)
            sources = [urls[k] for v in value.derived_from if (k := key_of(v)) in urls]
            add(
                urls[key],
                build_derived(
                    value,
                    report,
                    digest=digest,
                    subject=subject,
                    sources=sources,
                    interpretation=interpretations.get(key),
                    status=DERIVED_STATUS.get(status, "unknown"),
                ),
            )
    report_url = urn("DiagnosticReport", seed)
    report_pair = build_report(
        cbc,
        evaluation,
        digest=digest,
        subject=subject,
        status=status,
        results=[entry["fullUrl"] for entry in entries[1 if subject else 0 :]],
    )
    add(report_url, report_pair)

    flag_urls = []
    if subject is not None:
        patient = patient_key(message.patient, digest)
        order = report_pair[1]["ifNoneExist"]
        for finding in evaluation.findings:
            url = urn("Flag", seed, finding.rule_id)
            evidence = [urls[k] for e in finding.evidence if (k := key_of(e.value)) in urls]
            add(
                url,
                build_flag(
                    finding,
                    identifier=flag_identifier(patient, finding, order),
                    subject=subject,
                    start=report.effective,
                    evidence=evidence,
                ),
            )
            flag_urls.append(url)

    add(
        urn("Provenance", seed),
        build_provenance(
            message,
            targets=[report_url, *flag_urls],
            recorded=recorded,
            policy=rule_set_uri(evaluation.rule_set_id, evaluation.rule_set_version),
        ),
    )
    return {
        "resourceType": "Bundle",
        "id": uuid_value("Bundle", seed),
        "type": "transaction",
        "timestamp": recorded,
        "entry": entries,
    }

"""The transaction Bundle for one report: Patient, Observations, DiagnosticReport, Flags,
Provenance, in that order, with deterministic ``urn:uuid`` fullUrls."""

from __future__ import annotations

from collections import Counter

from leukofhir.emit.datatypes import Json, if_none_exist, reference, urn, uuid_value
from leukofhir.emit.flag import build_flag, flag_identifier
from leukofhir.emit.observation import (
    OBSERVATION_STATUSES,
    build_derived,
    build_observation,
    line_key,
)
from leukofhir.emit.patient import build_patient, patient_key
from leukofhir.emit.provenance import build_provenance, rule_set_uri
from leukofhir.emit.report import build_report, report_identifiers, report_status
from leukofhir.errors import ErrorCode, Issue, warning
from leukofhir.model import (
    Cbc,
    CbcValue,
    Evaluation,
    Identifier,
    LabMessage,
    LabObservation,
    LabReport,
)


def derived_status(report_status: str) -> str:
    """A derived count is as final as its report; a partial report's counts are preliminary."""
    if report_status == "partial":
        return "preliminary"
    return report_status if report_status in OBSERVATION_STATUSES else "unknown"


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
    """HL7 v2 input: everything is new.  FHIR input: the input's Patient, Observations and
    DiagnosticReport are referred to (:func:`input_reference`), not re-created; only what is
    new (a DiagnosticReport when the input had none, derived counts, Flags, Provenance) is
    an entry with a ``request``."""
    digest, report = message.digest, cbc.report
    seed = f"{digest}|{report.location}"
    entries: list[Json] = []

    def add(full_url: str, pair: tuple[Json, Json]) -> Json:
        entries.append({"fullUrl": full_url, "resource": pair[0], "request": pair[1]})
        return reference(full_url)

    fhir = message.source_format == "fhir"
    subject = None
    if message.patient is not None:
        patient_in = message.patient
        subject = input_reference(patient_in.reference, patient_in.identifiers, "Patient", fhir)
        if subject is None:
            subject = add(urn("Patient", seed), build_patient(message.patient))

    keys = {id(value): value_key(value) for value in (*cbc.values, *cbc.superseded)}

    def key_of(value: CbcValue) -> str:  # the rules hand back our own values: look them up
        return keys.get(id(value)) or value_key(value)

    interpretations = {key_of(value): found for value, found in evaluation.interpretations}
    refs: dict[str, Json] = {}  # CBC value key → how the output refers to its Observation
    sent = [obs for obs in report.observations if str(obs.location) in keys.values()]
    counts = Counter(line_key(obs) for obs in sent)
    for obs in sent:  # message order
        key = str(obs.location)
        if (
            ref := input_reference(obs.reference, obs.identifiers, "Observation", fhir)
        ) is not None:
            refs[key] = ref
            continue
        repeated = counts[line_key(obs)] > 1
        if repeated:
            issues.append(_repeated(obs, report))
        refs[key] = add(
            urn("Observation", seed, key),
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
    status = report_status(report, issues, observations=sent)
    for value in cbc.values:
        if value.derived:
            key = key_of(value)
            sources = [refs[k] for v in value.derived_from if (k := key_of(v)) in refs]
            refs[key] = add(
                urn("Observation", seed, key),
                build_derived(
                    value,
                    report,
                    digest=digest,
                    subject=subject,
                    sources=sources,
                    interpretation=interpretations.get(key),
                    status=derived_status(status),
                ),
            )

    order = report_identifiers(report, digest)[0]
    report_ref = input_reference(report.reference, (), "DiagnosticReport", fhir)
    if report_ref is None:
        report_ref = add(
            urn("DiagnosticReport", seed),
            build_report(
                cbc,
                evaluation,
                digest=digest,
                subject=subject,
                status=status,
                results=list(refs.values()),
            ),
        )

    flag_refs = []
    if subject is not None:
        patient = patient_key(message.patient, digest)
        for finding in evaluation.findings:
            evidence = [refs[k] for e in finding.evidence if (k := key_of(e.value)) in refs]
            flag_refs.append(
                add(
                    urn("Flag", seed, finding.rule_id),
                    build_flag(
                        finding,
                        identifier=flag_identifier(patient, finding, if_none_exist(order)),
                        subject=subject,
                        start=report.effective,
                        evidence=evidence,
                    ),
                )
            )

    add(
        urn("Provenance", seed),
        build_provenance(
            message,
            targets=[report_ref, *flag_refs],
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


def input_reference(
    sent: str, identifiers: tuple[Identifier, ...], kind: str, fhir: bool
) -> Json | None:
    """How the output refers to a resource the input already holds (FHIR input), or None
    when it must be created: HL7 v2 input, or a FHIR resource known only by a ``urn:uuid:``
    or as contained, which mean nothing outside their own Bundle, and without identifier."""
    if not fhir:
        return None
    if sent and not sent.startswith(("urn:", "#")):
        return {"reference": sent}
    if identifiers:
        first = identifiers[0]
        return {
            "type": kind,
            "identifier": {"system": first.system, "value": first.value}
            if first.system
            else {"value": first.value},
        }
    return None


def _repeated(obs: LabObservation, report: LabReport) -> Issue:
    return warning(
        ErrorCode.DUPLICATE_KEY,
        f"{obs.location} shares OBX-3 and OBX-4 with another line of {report.location};"
        " its Observation identifier adds its position",
        obs.location.at(4),
    )

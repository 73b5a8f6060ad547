"""One group of FHIR resources (a report) → a :class:`LabMessage`, or the error rejecting it.

A :class:`Group` is what the grouping steps (:mod:`.fhir_group` for a document,
:mod:`.fhir_ndjson` for NDJSON) decide belongs together: a header (the
DiagnosticReport, or a panel Observation with ``hasMember``; none for Observations
grouped by subject + effective + specimen) and its member Observations.

Building it maps every member (:mod:`.fhir_map`), then validates with the R4B models
the header and each member that names a CBC field (:func:`identify` with the
terminology in use); the first failure rejects the whole report.  Members that are no
CBC field are passed on unvalidated: the terminology step reports them as unmapped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from leukofhir.errors import Issue, Location
from leukofhir.ingest.fhir_index import Entry, as_dict, as_list, as_str
from leukofhir.ingest.fhir_json import canonical_digest
from leukofhir.ingest.fhir_map import identifiers, report_fields, to_observation, to_patient
from leukofhir.model import Identifier, LabMessage, LabObservation, LabReport, Patient, Provider
from leukofhir.terminology.identify import identify
from leukofhir.terminology.tables import Terminology

__all__ = ["Group", "PatientLookup", "Source", "build_message"]

# subject reference (the JSON object) and the entry holding it → the Patient resource, if any
PatientLookup = Callable[[dict[str, Any], Entry], "dict[str, Any] | None"]
# a reference and the entry holding it → the entry it names in the same input, if any
Resolver = Callable[[str, Entry], "Entry | None"]


@dataclass(slots=True)
class Group:
    """The resources of one report."""

    header: Entry | None
    members: list[Entry]
    issues: list[Issue] = field(default_factory=list)  # warnings found while grouping
    first_line: int = 0  # NDJSON: the line of its first resource


@dataclass(frozen=True, slots=True)
class Source:
    """What every report of one input shares."""

    zone: str
    terminology: Terminology
    patient_of: PatientLookup
    message_type: str = ""  # resourceType of the document: Bundle, Observation, ...
    trigger: str = ""  # Bundle.type
    sent_at: str = ""  # Bundle.timestamp
    resolve: Resolver | None = None  # references within the input (the ordering provider)


def build_message(
    group: Group, source: Source, path: str
) -> tuple[LabMessage | None, Issue | None]:
    """(the message, None) or (None, the error) for one group; ``path`` locates an empty one."""
    observations = [
        to_observation(m.resource, Location(expression=m.path), m.reference, source.zone)
        for m in group.members
    ]
    issues = list(group.issues)
    failure = _validate(group, observations, source.terminology, issues)
    if failure is not None:
        return None, failure
    header = group.header
    patient, patient_resource = _patient(group, source)
    resources: list[Any] = [m.resource for m in ([header] if header else []) + group.members]
    if patient_resource is not None:
        resources.append(patient_resource)
    message = LabMessage(
        source_format="fhir",
        digest=canonical_digest(resources),
        message_type=source.message_type,
        trigger=source.trigger,
        sent_at=source.sent_at,
        patient=patient,
        reports=(_report(group, tuple(observations), source, path),),
        issues=tuple(issues),
    )
    return message, None


def _validate(
    group: Group, observations: list[LabObservation], terminology: Terminology, issues: list[Issue]
) -> Issue | None:
    used = [
        m for m, o in zip(group.members, observations, strict=True) if identify(o, terminology)[0]
    ]
    if not used:
        return None
    from leukofhir.ingest.fhir_validate import validate_resource  # fhir.resources: FHIR only

    for entry in ([group.header] if group.header else []) + used:
        failure, warnings = validate_resource(entry.resource, entry.path, entry.full_url)
        issues.extend(warnings)
        if failure is not None:
            return failure
    return None


def _report(
    group: Group, observations: tuple[LabObservation, ...], source: Source, path: str
) -> LabReport:
    header = group.header
    if header is not None:
        is_report = header.resource_type == "DiagnosticReport"
        return LabReport(
            location=Location(expression=header.path),
            observations=observations,
            reference=header.reference if is_report else "",
            ordering_provider=_requester(header, source) if is_report else None,
            **report_fields(header.resource, source.zone),
        )
    first = min(group.members, key=lambda m: m.position) if group.members else None
    if first is None:
        return LabReport(location=Location(expression=path))
    fields = report_fields(first.resource, source.zone)
    return LabReport(
        location=Location(expression=first.path),
        effective=fields["effective"],
        issued=fields["issued"],
        observations=observations,
    )


def _requester(header: Entry, source: Source) -> Provider | None:
    """The ordering provider: the ``requester`` of the ServiceRequest the DiagnosticReport is
    ``basedOn`` (the first that names one), as the Practitioner in the input shows it, else
    by the identifier or the display of the reference.  (``performer`` is the laboratory
    that issued the report, not who ordered it.)"""
    if source.resolve is None:
        return None
    for based in as_list(header.resource.get("basedOn")):
        request = source.resolve(as_str(as_dict(based).get("reference")), header)
        if request is None or request.resource_type != "ServiceRequest":
            continue
        requester = as_dict(request.resource.get("requester"))
        if not requester:
            continue
        found = source.resolve(as_str(requester.get("reference")), request)
        if found is not None and found.resource_type in ("Practitioner", "PractitionerRole"):
            idents = identifiers(found.resource)
            name = as_dict(next(iter(as_list(found.resource.get("name"))), {}))
            given = tuple(g for g in as_list(name.get("given")) if isinstance(g, str))
            return Provider(
                idents[0] if idents else None,
                as_str(name.get("family")),
                given,
                as_str(requester.get("display")),
            )
        logical = as_dict(requester.get("identifier"))
        ident = None
        if value := as_str(logical.get("value")):
            ident = Identifier(value, as_str(logical.get("system")))
        if ident is not None or as_str(requester.get("display")):
            return Provider(ident, display=as_str(requester.get("display")))
    return None


def _patient(group: Group, source: Source) -> tuple[Patient | None, dict[str, Any] | None]:
    for entry in ([group.header] if group.header else []) + group.members:
        subject = as_dict(entry.resource.get("subject"))
        if subject:
            resource = source.patient_of(subject, entry)
            return to_patient(subject, resource), resource
    return None, None

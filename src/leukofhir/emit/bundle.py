"""The transaction Bundle for one report, in two steps around the lifecycle:

* :func:`build_draft` (pure, per report): the Patient, the Observations as sent, derived
  counts and the DiagnosticReport, with deterministic ``urn:uuid`` fullUrls, and the
  :class:`~leukofhir.lifecycle.facts.ReportFacts` the lifecycle folds;
* :func:`finish`: those entries, then what the lifecycle writes (results a newer version
  withdraws, standing Flags that changed) and the Provenance.

Write semantics (LIFECYCLE.md): Observations and the DiagnosticReport by conditional
update on their business identifiers (a newer version replaces the older), the Patient by
conditional create, Flags by conditional update on their deterministic identifiers, the
Provenance by conditional create on a tag naming the document."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from leukofhir.emit.datatypes import Json, identifier_key, reference, urn, uuid_value
from leukofhir.emit.flag import build_flag, flag_text
from leukofhir.emit.jsonio import dumps
from leukofhir.emit.notify import (
    build_notification,
    build_revocation,
    recipient,
    wants_notification,
)
from leukofhir.emit.observation import (
    OBSERVATION_STATUSES,
    build_derived,
    build_observation,
    line_key,
)
from leukofhir.emit.patient import build_patient, patient_key
from leukofhir.emit.provenance import build_provenance, rule_set_uri, source_entity
from leukofhir.emit.report import build_report, report_identifiers, report_status
from leukofhir.emit.withdrawn import withdrawn_observation
from leukofhir.errors import ErrorCode, Issue, warning
from leukofhir.lifecycle.facts import ReportFacts, Result, report_facts
from leukofhir.lifecycle.fold import FlagWrite, Writes
from leukofhir.model import (
    Analyte,
    Cbc,
    CbcValue,
    Evaluation,
    Identifier,
    LabMessage,
    LabObservation,
    LabReport,
    Measure,
)
from leukofhir.rules import RuleSet
from leukofhir.rules.values import Missing, resolve


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


@dataclass(frozen=True, slots=True)
class Draft:
    """One report's own resources, before the lifecycle: everything that does not depend
    on the patient's other reports (Patient, Observations, derived counts, the
    DiagnosticReport), and what :func:`finish` needs to complete the Bundle."""

    id: str  # Bundle.id
    seed: str  # of every fullUrl in the Bundle
    recorded: str  # the processing time: Bundle.timestamp, Provenance.recorded
    entries: tuple[Json, ...]
    subject: Json | None  # how this Bundle refers to the patient
    report: Json  # how it refers to the DiagnosticReport
    source: Json  # Provenance.entity: the input message
    policy: str  # Provenance.policy: the rule set
    facts: ReportFacts | None  # None without a patient: no standing Flag
    label: str = ""  # the report's place in its message ("OBR[1]"), for notes
    # --notify-critical: ask for the ordering provider (``to``, None: unknown) to be told
    # of a critical episode (:mod:`leukofhir.emit.notify`)
    notify: bool = False
    to: Json | None = None
    # ``entries`` as JSON (comma-separated), when the draft travels between processes
    packed: bytes = field(default=b"", repr=False)

    def pack(self) -> Draft:
        """The draft with its entries as JSON bytes: cheap to hand to another process,
        and :func:`finish_bytes` writes them back as they were."""
        return replace(self, entries=(), packed=_entries_json(self.entries))


def build_draft(
    message: LabMessage,
    cbc: Cbc,
    evaluation: Evaluation,
    *,
    rule_set: RuleSet,
    recorded: str,
    issues: list[Issue],
    refer_to_input: bool = False,
    notify: bool = False,
) -> Draft:
    """Everything the report holds is written, so that the Bundle loads into an empty
    server: HL7 v2 input, and FHIR input by default (its resources by their own
    identifiers, else the identifier of their reference on the source server).  With
    ``refer_to_input`` (FHIR written back to its source server) the input's Patient,
    Observations and DiagnosticReport are referred to as sent (:func:`input_reference`)
    and only what is new (a DiagnosticReport when the input had none, derived counts) is
    an entry.  ``notify``: a critical episode asks for the ordering provider to be told."""
    digest, report = message.digest, cbc.report
    seed = f"{digest}|{report.location}"
    entries: list[Json] = []
    results: list[Result] = []

    def add(full_url: str, pair: tuple[Json, Json]) -> Json:
        entries.append({"fullUrl": full_url, "resource": pair[0], "request": pair[1]})
        if pair[0]["resourceType"] == "Observation":
            results.append(_result(pair[0]))
        return reference(full_url)

    fhir = refer_to_input and message.source_format == "fhir"
    subject = None
    if message.patient is not None:
        patient_in = message.patient
        subject = input_reference(patient_in.reference, patient_in.identifiers, "Patient", fhir)
        if subject is None:
            subject = add(urn("Patient", seed), build_patient(message.patient, digest))

    keys = {id(value): value_key(value) for value in (*cbc.values, *cbc.superseded)}

    def key_of(value: CbcValue) -> str:  # the rules hand back our own values: look them up
        return keys.get(id(value)) or value_key(value)

    interpretations = {key_of(value): found for value, found in evaluation.interpretations}
    refs: dict[str, Json] = {}  # CBC value key → how the output refers to its Observation
    idents: dict[str, str] = {}  # CBC value key → its Observation's identifier (system|value)
    used = set(keys.values())
    lines = [(str(obs.location), obs) for obs in report.observations]
    sent = [obs for key, obs in lines if key in used]
    counts = Counter(line_key(obs) for obs in sent)
    for key, obs in lines:  # message order
        if key not in used:
            continue
        if (
            ref := input_reference(obs.reference, obs.identifiers, "Observation", fhir)
        ) is not None:
            refs[key] = ref
            if obs.identifiers:
                idents[key] = f"{obs.identifiers[0].system}|{obs.identifiers[0].value}"
            continue
        repeated = counts[line_key(obs)] > 1
        if repeated:
            issues.append(_repeated(obs, report))
        pair = build_observation(
            obs,
            report,
            digest=digest,
            subject=subject,
            interpretation=interpretations.get(key),
            issues=issues,
            repeated=repeated,
        )
        refs[key] = add(urn("Observation", seed, key), pair)
        idents[key] = identifier_key(pair[0]["identifier"][0])
    status = report_status(report, issues, observations=sent)
    for value in cbc.values:
        if value.derived:
            key = key_of(value)
            sources = [refs[k] for v in value.derived_from if (k := key_of(v)) in refs]
            pair = build_derived(
                value,
                report,
                digest=digest,
                subject=subject,
                sources=sources,
                interpretation=interpretations.get(key),
                status=derived_status(status),
            )
            refs[key] = add(urn("Observation", seed, key), pair)
            idents[key] = identifier_key(pair[0]["identifier"][0])

    report_ids = report_identifiers(report, digest)
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
    facts = None
    if subject is not None and message.patient is not None:
        facts = report_facts(
            message,
            report,
            evaluation,
            rule_set,
            patient=patient_key(message.patient, digest),
            report_key=identifier_key(report_ids[0]),
            status=status,
            results=tuple(results),
            evidence={vid: idents[k] for vid, k in keys.items() if k in idents},
            # without a collection time a value is no trend's previous value either
            values=tuple(
                _trend_value(cbc, analyte, rule_set, idents, key_of)
                for analyte in rule_set.trend_analytes
            )
            if report.effective
            else (),
        )
    to = recipient(report.ordering_provider) if notify else None
    if notify and to is None and any(f.critical for f in evaluation.findings):
        issues.append(_no_provider(report))
    return Draft(
        id=uuid_value("Bundle", seed),
        seed=seed,
        recorded=recorded,
        entries=tuple(entries),
        subject=subject,
        report=report_ref,
        source=source_entity(message),
        policy=rule_set_uri(evaluation.rule_set_id, evaluation.rule_set_version),
        facts=facts,
        label=str(report.location),
        notify=notify,
        to=to,
    )


def _trend_value(
    cbc: Cbc,
    analyte: Analyte,
    rule_set: RuleSet,
    idents: dict[str, str],
    key_of: Callable[[CbcValue], str],
) -> tuple[str, str]:
    """The report's usable count of ``analyte`` for the trend rules: (normalised value with
    its comparator, the identifier of its Observation), ("", "") when there is none."""
    value = resolve(cbc, analyte, Measure.COUNT, rule_set)
    if isinstance(value, Missing) or value.number is None:
        return "", ""
    return f"{value.comparator}{value.number}", idents.get(key_of(value), "")


def _no_provider(report: LabReport) -> Issue:
    return warning(
        ErrorCode.REQUIRED_FIELD_MISSING,
        f"{report.location}: a critical value and --notify-critical, but no ordering provider"
        " (ORC-12, OBR-16; FHIR: the requester of the ServiceRequest the report is based on):"
        " the CommunicationRequest has no recipient",
        report.location,
        fhir_type="incomplete",
    )


def finish(draft: Draft, writes: Writes, rule_set: RuleSet) -> Json | None:
    """The transaction Bundle of a report once the lifecycle has spoken: its own entries,
    then what the lifecycle adds (:func:`lifecycle_entries`); None for a superseded
    version, which writes nothing."""
    if writes.superseded_by is not None:
        return None
    return {
        **_head(draft),
        "entry": [*draft.entries, *lifecycle_entries(draft, writes, rule_set)],
    }


def finish_bytes(draft: Draft, writes: Writes, rule_set: RuleSet) -> bytes | None:
    """:func:`finish` as JSON bytes (those of :func:`leukofhir.emit.jsonio.dumps`), from a
    packed draft too: its entries are not parsed again, only what follows them is written."""
    if writes.superseded_by is not None:
        return None
    own = draft.packed or _entries_json(draft.entries)
    added = _entries_json(lifecycle_entries(draft, writes, rule_set))
    head = dumps(_head(draft))[:-1]
    return b"".join((head, b',"entry":[', own, b"," if own else b"", added, b"]}"))


def _head(draft: Draft) -> Json:
    return {
        "resourceType": "Bundle",
        "id": draft.id,
        "type": "transaction",
        "timestamp": draft.recorded,
    }


def _entries_json(entries: tuple[Json, ...] | list[Json]) -> bytes:
    return dumps(list(entries))[1:-1]


def lifecycle_entries(draft: Draft, writes: Writes, rule_set: RuleSet) -> list[Json]:
    """Results the newer version withdraws, the Flags that changed, and the Provenance of
    the whole document (target: the DiagnosticReport and every Flag written)."""
    entries: list[Json] = []
    targets = [draft.report]
    facts = draft.facts
    for result in writes.withdrawn:
        full_url = urn("Observation", draft.seed, "withdrawn", result.identifier)
        entries.append(_entry(full_url, withdrawn_observation(result, draft.subject, facts)))
    critical: dict[str, list[tuple[FlagWrite, str]]] = {}  # by the episode's critical report
    for write in writes.flags:
        assert draft.subject is not None  # Flags exist only for a patient
        full_url = urn("Flag", draft.seed, write.identifier)
        entries.append(_entry(full_url, build_flag(write, rule_set, subject=draft.subject)))
        targets.append(reference(full_url))
        if draft.notify and facts is not None and wants_notification(write, facts.report):
            assert write.episode is not None
            critical.setdefault(write.episode.critical_from, []).append(
                (write, flag_text(write, rule_set))
            )
    if facts is not None and draft.subject is not None and draft.notify:
        for report_key, flags in critical.items():
            parts = () if report_key == facts.report else (report_key,)
            full_url = urn("CommunicationRequest", draft.seed, *parts)
            notification = build_notification(
                flags,
                key=(facts.patient, report_key),
                subject=draft.subject,
                report=draft.report,
                to=draft.to,
                authored=draft.recorded,
            )
            entries.append(_entry(full_url, notification))
            targets.append(reference(full_url))
        for report_key in writes.revoked:
            full_url = urn("CommunicationRequest", draft.seed, "revoked", report_key)
            revocation = build_revocation(
                key=(facts.patient, report_key),
                subject=draft.subject,
                report=draft.report,
                authored=draft.recorded,
            )
            entries.append(_entry(full_url, revocation))
            targets.append(reference(full_url))
    entries.append(
        _entry(
            urn("Provenance", draft.seed),
            build_provenance(
                draft.id,
                draft.source,
                targets=targets,
                recorded=draft.recorded,
                policy=draft.policy,
            ),
        )
    )
    return entries


def _entry(full_url: str, pair: tuple[Json, Json]) -> Json:
    return {"fullUrl": full_url, "resource": pair[0], "request": pair[1]}


def _result(resource: Json) -> Result:
    coding = resource["code"].get("coding") or [{}]
    first = coding[0]
    return Result(
        identifier_key(resource["identifier"][0]),
        f"{first.get('system', '')}|{first.get('code', '')}",
        resource["status"],
    )


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

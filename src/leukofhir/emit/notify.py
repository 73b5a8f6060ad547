"""CommunicationRequest: asks once per critical episode that the ordering provider be told
(``--notify-critical``).

FHIR R4 says a Flag is a standing warning, not a way to tell a clinician about a result;
CommunicationRequest is "a request to convey information; e.g. the CDS system proposes
that an alert be sent to a responsible provider".  leukofhir cannot know that anyone was
told, so it asks (a CommunicationRequest) rather than record a Communication that did not
happen (rule file, deviation ``critical-notification``).

* Once per critical episode: it is written in the Bundle of the report where an episode's
  finding first rested on a critical value (:attr:`Episode.critical_from`), beside the
  Flag.  One request per such report, however many findings it makes critical (a WBC of
  0.7 with an ANC of 0.15 is leukopenia, neutropenia and agranulocytosis at once: one
  call to the provider, not three), ``about`` every Flag it concerns.
* Idempotent: its identifier comes from the patient and that report, and it is written by
  conditional create, so a re-delivered or restated Bundle adds nothing.
* The recipient is the ordering provider (ORC-12, else OBR-16; FHIR: the requester of the
  ServiceRequest the DiagnosticReport is ``basedOn``) by identifier, or by name only; with
  neither the request has no recipient and its note says so.
"""

from __future__ import annotations

from leukofhir.emit.datatypes import (
    BASE,
    DEVICE,
    Json,
    identifier,
    if_none_exist,
    logical_reference,
    text,
    uuid_value,
)
from leukofhir.lifecycle.fold import ACTIVE, FlagWrite
from leukofhir.model import Provider

__all__ = ["CATEGORY", "build_notification", "recipient", "wants_notification"]

CATEGORY = {
    "coding": [
        {
            "system": "http://terminology.hl7.org/CodeSystem/communication-category",
            "code": "alert",
            "display": "Alert",
        }
    ]
}
SYSTEM = f"{BASE}/sid/critical-notification"


def recipient(provider: Provider | None) -> Json | None:
    """How the request names the ordering provider: a logical reference by identifier
    (with the name as display), or the name alone; None when nothing is known."""
    if provider is None:
        return None
    out: Json = {}
    if provider.identifier is not None:
        out = {"type": "Practitioner", "identifier": identifier(provider.identifier, "provider")}
    if provider.name:
        out["display"] = text(provider.name)
    return out or None


def wants_notification(write: FlagWrite, report: str) -> bool:
    """Does this Flag write ask for a notification in the Bundle of ``report``?"""
    episode = write.episode
    return (
        write.status == ACTIVE
        and episode is not None
        and bool(episode.critical_from)
        and episode.critical_from == report
    )


def build_notification(
    flags: list[tuple[FlagWrite, str]],
    *,
    key: tuple[str, str],
    subject: Json,
    report: Json,
    to: Json | None,
    authored: str,
) -> tuple[Json, Json]:
    """The resource and its ``request`` (POST with ``ifNoneExist`` on its identifier) for
    the ``flags`` (each with its text) a report makes critical; ``key``: (patient, report)."""
    ident = {"system": SYSTEM, "value": uuid_value("CommunicationRequest", *key)}
    texts = "; ".join(text for _, text in flags)
    note = f"Critical value: {texts}. Please inform the ordering provider."
    if to is None:
        note += " The ordering provider is not known (no ORC-12 / OBR-16 or requester was sent)."
    resource: Json = {
        "resourceType": "CommunicationRequest",
        "identifier": [ident],
        "status": "active",
        "category": [CATEGORY],
        "priority": "stat",
        "subject": subject,
        "about": [
            *(logical_reference("Flag", f"{BASE}/sid/flag|{w.identifier}") for w, _ in flags),
            report,
        ],
        "payload": [{"contentString": text(note)}],
        "authoredOn": authored,
        "requester": DEVICE,
    }
    if to is not None:
        resource["recipient"] = [to]
    return resource, {
        "method": "POST",
        "url": "CommunicationRequest",
        "ifNoneExist": if_none_exist(ident),
    }

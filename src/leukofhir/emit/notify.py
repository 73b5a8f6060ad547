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
* Idempotent: its identifier comes from the patient and that report (the episode's
  :attr:`~Episode.critical_from`, whichever report's Bundle asks), and it is written by
  conditional create, so a re-delivered or restated Bundle adds nothing.  A late report
  that moves the episode's start keeps the request when the critical report stays the
  same; a late report that is itself critical and earlier opens the episode anew: its
  request is asked for and the earlier one revoked, so one stands.
* Withdrawn: when no Flag carries an episode's critical value any more (a correction
  removed it, its Flags were withdrawn ``entered-in-error``), its request is written again
  ``revoked`` by a conditional update on the same identifier.
* The recipient is the ordering provider (ORC-12, else OBR-16; FHIR: the requester of the
  ServiceRequest the DiagnosticReport is ``basedOn``) by identifier, or by name only; with
  neither the request has no recipient and its note says so.
"""

from __future__ import annotations

from leukofhir.emit.datatypes import (
    BASE,
    DEVICE,
    Json,
    conditional_update,
    identifier,
    if_none_exist,
    logical_reference,
    text,
    uuid_value,
)
from leukofhir.lifecycle.fold import ACTIVE, FlagWrite
from leukofhir.model import Provider

__all__ = [
    "CATEGORY",
    "build_notification",
    "build_revocation",
    "notification_identifier",
    "recipient",
    "wants_notification",
]

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
    """Does this Flag write ask for a notification in the Bundle of ``report``?  Where
    the fold says no request carries its critical episode yet (:attr:`FlagWrite.notify`),
    and in the Bundle of the report that made it critical (restated the same)."""
    episode = write.episode
    return (
        write.status == ACTIVE
        and episode is not None
        and bool(episode.critical_from)
        and (write.notify or episode.critical_from == report)
    )


def notification_identifier(key: tuple[str, str]) -> Json:
    """The request's identifier; ``key``: (patient, the report the episode first rested
    on a critical value in)."""
    return {"system": SYSTEM, "value": uuid_value("CommunicationRequest", *key)}


def build_revocation(
    *, key: tuple[str, str], subject: Json, report: Json, authored: str
) -> tuple[Json, Json]:
    """The request of ``key`` withdrawn: written ``revoked`` (R4 CommunicationRequest.status:
    "the authorization/request to act has been terminated prior to the full completion of
    the intended actions") by a conditional update on its identifier, so a re-delivered
    Bundle changes nothing more.  No Flag carries its critical value any more: a correction
    removed it, or a late report moved the episode (its own request then stands)."""
    ident = notification_identifier(key)
    note = (
        "Withdrawn: the critical value this request was about is no longer part of the"
        " patient's record (a corrected or later report); see the current Flags."
    )
    resource: Json = {
        "resourceType": "CommunicationRequest",
        "identifier": [ident],
        "status": "revoked",
        "category": [CATEGORY],
        "priority": "stat",
        "subject": subject,
        "about": [report],
        "payload": [{"contentString": text(note)}],
        "authoredOn": authored,
        "requester": DEVICE,
    }
    return resource, conditional_update("CommunicationRequest", ident)


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
    ident = notification_identifier(key)
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

"""--notify-critical: one CommunicationRequest to the ordering provider per critical
episode, beside its standing Flag; idempotent (conditional create on its identifier)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from leukofhir.context import Context
from leukofhir.pipeline import process
from tests.conftest import make_context, settled
from tests.lifecycle.server_model import ServerModel
from tests.rules.clinical_messages import ANC, WBC, oru

NOTIFY: Context = make_context(notify_critical=True)
START = datetime(2025, 3, 1, 8, 0, tzinfo=UTC)


def message(n: int, anc: str, *, provider: str | None = None) -> bytes:
    collected = f"{START + timedelta(hours=24 * n):%Y%m%d%H%M%S}+0000"
    extra = {} if provider is None else {"provider": provider}
    return oru(
        collected=collected,
        counts={WBC: "6.0", ANC: anc},
        order=f"F{n:03d}",
        control=f"C{n:03d}",
        **extra,  # type: ignore[arg-type]
    )


def bundles(messages: list[bytes], context: Context = NOTIFY) -> list[dict[str, Any]]:
    return [
        d
        for outcome in settled(messages, context)
        for d in outcome.documents()
        if d["resourceType"] == "Bundle"
    ]


def requests(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    return [e for e in bundle["entry"] if e["resource"]["resourceType"] == "CommunicationRequest"]


def test_one_request_per_critical_episode_to_the_ordering_provider() -> None:
    # ANC 1.2 (neutropenia), 0.3 (critical), 0.2 (critical again), all one episode
    first, second, third = bundles([message(0, "1.2"), message(1, "0.3"), message(2, "0.2")])
    assert requests(first) == []
    (entry,) = requests(second)  # one request for the report's critical findings
    assert "Neutropenia" in entry["resource"]["payload"][0]["contentString"]
    resource, request = entry["resource"], entry["request"]
    assert resource["status"] == "active"
    assert resource["priority"] == "stat"
    assert resource["category"][0]["coding"][0]["code"] == "alert"
    assert resource["recipient"] == [
        {
            "type": "Practitioner",
            "identifier": {
                "type": {
                    "coding": [
                        {"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "NPI"}
                    ]
                },
                "system": "https://leukofhir.dev/fhir/sid/provider/NPI",
                "value": "1234567890",
            },
            "display": "Ada Okafor",
        }
    ]
    assert resource["about"][0]["type"] == "Flag"
    assert request["method"] == "POST"
    assert request["ifNoneExist"].startswith(
        "identifier=https://leukofhir.dev/fhir/sid/critical-notification%7C"
    )
    # the Flag of the episode is the same one, and the third report asks nothing again
    assert requests(third) == []


def test_several_critical_findings_of_one_report_ask_once() -> None:
    # WBC 0.7 and ANC 0.1: leukopenia G4, neutropenia G4, agranulocytosis, all critical
    data = oru(counts={WBC: "0.7", ANC: "0.1"})
    (bundle,) = bundles([data])
    (entry,) = requests(bundle)
    flags = [a for a in entry["resource"]["about"] if a.get("type") == "Flag"]
    assert len(flags) == 3
    text = entry["resource"]["payload"][0]["contentString"]
    assert "Leukopenia" in text
    assert "Agranulocytosis" in text


def test_a_redelivered_report_asks_again_by_the_same_conditional_create() -> None:
    once = bundles([message(0, "0.3")])
    twice = bundles([message(0, "0.3"), message(0, "0.3")])
    assert [requests(b) for b in twice] == [requests(once[0])] * 2
    model = ServerModel()
    for bundle in twice:
        model.apply(bundle)
    assert len(model.of("CommunicationRequest")) == len(requests(once[0]))  # no duplicate


def test_a_new_episode_asks_again() -> None:
    # critical, then normal twice (>= 24 h apart: closed), then critical again
    values = ["0.3", "3.0", "3.0", "3.0", "3.0", "0.3"]
    out = bundles([message(n, v) for n, v in enumerate(values)])
    asked = [len(requests(b)) > 0 for b in out]
    assert asked == [True, False, False, False, False, True]


def test_off_by_default_and_without_critical_values() -> None:
    assert requests(bundles([message(0, "0.3")], make_context())[0]) == []
    assert requests(bundles([message(0, "1.2")])[0]) == []


def test_without_an_ordering_provider_the_request_says_so_and_a_warning() -> None:
    data = message(0, "0.3", provider="")
    (outcome,) = process(data, NOTIFY)
    assert any("no ordering provider" in i.message for i in outcome.issues)
    (entry, *_) = requests(bundles([data])[0])
    assert "recipient" not in entry["resource"]
    assert "ordering provider is not known" in entry["resource"]["payload"][0]["contentString"]


def corrected(n: int, anc: str) -> bytes:
    """A corrected version (OBR-25 'C', a later MSH-7) of report ``n``."""
    data = message(n, anc).replace(b"|||F\r", b"|||C\r", 1)
    collected = f"{START + timedelta(hours=24 * n):%Y%m%d%H%M%S}+0000"
    later = f"{START + timedelta(hours=24 * n + 5):%Y%m%d%H%M%S}+0000"
    head, _, rest = data.partition(b"\r")
    return head.replace(collected.encode(), later.encode()) + b"\r" + rest


def test_a_correction_that_removes_the_critical_value_revokes_the_request() -> None:
    first, second = bundles([message(0, "0.3"), corrected(0, "3.5")])
    (asked,) = requests(first)
    (revoked,) = requests(second)
    assert revoked["resource"]["status"] == "revoked"
    assert revoked["resource"]["identifier"] == asked["resource"]["identifier"]
    assert revoked["request"]["method"] == "PUT"
    assert revoked["request"]["url"] == "CommunicationRequest?" + asked["request"]["ifNoneExist"]
    flags = [e["resource"] for e in second["entry"] if e["resource"]["resourceType"] == "Flag"]
    assert {f["status"] for f in flags} == {"entered-in-error"}
    # delivered again: the same conditional update, nothing more
    again = bundles([message(0, "0.3"), corrected(0, "3.5"), corrected(0, "3.5")])
    assert [r["resource"]["status"] for r in requests(again[-1])] in ([], ["revoked"])


def test_out_of_order_critical_reports_leave_one_request_standing() -> None:
    late_first = bundles([message(1, "0.2"), message(0, "0.3")])
    in_order = bundles([message(0, "0.3"), message(1, "0.2")])
    standing = {
        r["resource"]["identifier"][0]["value"]: r["resource"]["status"]
        for b in late_first
        for r in requests(b)
    }
    assert sorted(standing.values()) == ["active", "revoked"]
    (active,) = [k for k, v in standing.items() if v == "active"]
    (expected,) = [r["resource"]["identifier"][0]["value"] for r in requests(in_order[0])]
    assert active == expected  # the same request as in collection order
    assert requests(in_order[1]) == []


def test_a_late_non_critical_report_keeps_the_request() -> None:
    # the critical report first, then an earlier non-critical one opens the episode earlier
    first, second = bundles([message(1, "0.3"), message(0, "1.2")])
    assert len(requests(first)) == 1
    assert requests(second) == []  # the same critical report: its request still stands

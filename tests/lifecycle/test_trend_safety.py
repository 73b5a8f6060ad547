"""Trend findings (review of issue 12): only between collection times, and against the
ANC limit in force for the patient."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from leukofhir.context import Context
from leukofhir.rules import load_rule_set
from leukofhir.rules.deployment import load_deployment
from tests.conftest import make_context, settled
from tests.rules.clinical_messages import ANC, WBC, oru

CONTEXT = make_context()


def without_collection_time(data: bytes, reported: str) -> bytes:
    """``data`` with OBR-7 and every OBX-14 emptied and OBR-22 / MSH-7 set to ``reported``."""
    segments = data.decode().split("\r")
    out = []
    for segment in segments:
        fields = segment.split("|")
        if fields[0] == "OBR":
            fields[7] = ""
            fields[22] = reported
        elif fields[0] == "OBX" and len(fields) > 14:
            fields[14] = ""
        elif fields[0] == "MSH":
            fields[6] = reported
        out.append("|".join(fields))
    return "\r".join(out).encode()


def run(messages: list[bytes], context: Context = CONTEXT) -> list[dict[str, Any]]:
    return [
        d
        for outcome in settled(messages, context)
        for d in outcome.documents()
        if d["resourceType"] == "Bundle"
    ]


def resources(bundle: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == kind]


def fall_flags(bundles: list[dict[str, Any]]) -> list[str]:
    return [
        f["code"]["text"]
        for b in bundles
        for f in resources(b, "Flag")
        if "fall" in f["code"]["text"].lower()
    ]


def test_a_trend_is_not_evaluated_without_a_collection_time() -> None:
    first = oru(collected="20250301080000-0600", counts={WBC: "6.0", ANC: "3.0"}, order="K1")
    second = without_collection_time(
        oru(counts={WBC: "6.0", ANC: "1.4"}, order="K2", control="C2"), "20250302080000-0600"
    )
    bundles = run([first, second])
    assert fall_flags(bundles) == []
    (report,) = resources(bundles[1], "DiagnosticReport")
    assert "anc-fall: no collection time was sent (OBR-7)" in report["conclusion"]
    # and a report without collection time is no previous value of a later one either
    third = oru(collected="20250303080000-0600", counts={WBC: "6.0", ANC: "1.4"}, order="K3")
    assert fall_flags(run([second, third])) == []


def test_anc_fall_uses_the_patient_limit_in_force(tmp_path: Path) -> None:
    (tmp_path / "limits.csv").write_text(
        "system,value,anc_below,unit,basis\nHOSP,P100,1.0,10*9/L,Duffy-null Fy(a-b-)\n",
        encoding="utf-8",
    )
    site = tmp_path / "site.toml"
    site.write_text(
        'name = "s"\nversion = "1"\nsource = "t"\n[patients]\nfile = "limits.csv"\n',
        encoding="utf-8",
    )
    context = make_context(deployment=load_deployment(site, load_rule_set()))
    first = oru(collected="20250301080000+0000", counts={WBC: "6.0", ANC: "2.8"}, order="P1")
    second = oru(
        collected="20250302080000+0000", counts={WBC: "6.0", ANC: "1.2"}, order="P2", control="C2"
    )
    # ANC 2.8 to 1.2 halved, but 1.2 is normal for this patient (limit 1.0): no trend finding
    assert fall_flags(run([first, second], context)) == []
    # without the patient's limit, 1.2 < 1.5: a trend finding
    assert len(fall_flags(run([first, second]))) == 1
    # below the patient's limit: a trend finding that names it
    third = oru(
        collected="20250302080000+0000", counts={WBC: "6.0", ANC: "0.9"}, order="P2", control="C3"
    )
    assert len(fall_flags(run([first, third], context))) == 1


def test_a_converted_value_is_shown_without_spurious_precision() -> None:
    def per_microlitre(data: bytes, value: str) -> bytes:
        return data.replace(f"|{value}|10*9/L|".encode(), f"|{value}|/uL|".encode())

    first = oru(collected="20250301080000+0000", counts={WBC: "6.0", ANC: "2800"}, order="U1")
    second = oru(
        collected="20250302080000+0000", counts={WBC: "6.0", ANC: "1200"}, order="U2", control="C2"
    )
    (text,) = fall_flags(run([per_microlitre(first, "2800"), per_microlitre(second, "1200")]))
    assert "2.8 10*9/L at" in text
    assert "to 1.2 10*9/L at" in text
    assert "2.800" not in text
    assert "1.200" not in text

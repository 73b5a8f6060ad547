"""The clinical context through ``leukofhir serve``: a deployment profile (``--profile``,
with its patient file) and ``--notify-critical`` reach every service process, which loads
the profile once at its start, never per message; a bad profile refuses the start with
the setting's name."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

import leukofhir.rules
import leukofhir.rules.deployment
import leukofhir.terminology
from leukofhir.cli import main
from leukofhir.context import Settings
from tests.rules.clinical_messages import ANC, WBC, oru
from tests.serve.helpers import Peer, field_of, running, service

BASIS = "Duffy-null phenotype Fy(a-b-), blood bank 2024-05-02"
OWN_LIMIT = "limit < 1.0 10*9/L for this patient"
START = datetime(2025, 3, 1, 8, 0, tzinfo=UTC)


def site(folder: Path) -> Path:
    """A deployment profile whose patient file gives patient P100 (HOSP) an ANC limit 1.0."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "limits.csv").write_text(
        f'system,value,anc_below,unit,basis\nHOSP,P100,1.0,10*9/L,"{BASIS}"\n', encoding="utf-8"
    )
    path = folder / "site.toml"
    path.write_text(
        'name = "riverbend"\nversion = "2025.1"\nsource = "test"\n'
        '[patients]\nfile = "limits.csv"\n',
        encoding="utf-8",
    )
    return path


def report(day: int, anc: str, patient: str = "P100") -> bytes:
    """``patient``'s CBC collected ``day`` days after START."""
    return oru(
        collected=f"{START + timedelta(days=day):%Y%m%d%H%M%S}+0000",
        counts={WBC: "6.0", ANC: anc},
        patient=patient,
        order=f"F{patient}{day:03d}",
        control=f"C{patient}{day:03d}",
    )


def resources(port: int, message: bytes) -> dict[str, list[dict[str, Any]]]:
    """The resources of the Bundle the service answers for ``message``, by type."""
    response = httpx.post(
        f"http://127.0.0.1:{port}/hl7v2",
        content=message,
        headers={"Content-Type": "x-application/hl7-v2+er7", "Accept": "application/fhir+json"},
        timeout=20,
    )
    assert response.status_code == 200, response.text
    bundle = response.json()
    assert bundle["type"] == "transaction", bundle
    found: dict[str, list[dict[str, Any]]] = {}
    for entry in bundle["entry"]:
        found.setdefault(entry["resource"]["resourceType"], []).append(entry["resource"])
    return found


def test_a_service_with_a_profile_and_notify_critical(tmp_path: Path) -> None:
    options = ("--shutdown-timeout", "5", "--workers", "2", "--notify-critical")
    with service(tmp_path, (*options, "--profile", str(site(tmp_path / "site")))) as running:
        # ANC 0.9: neutropenia against this patient's own limit 1.0, not critical
        first = resources(running.http, report(0, "0.9"))
        (flag,) = first["Flag"]
        (dr,) = first["DiagnosticReport"]
        assert OWN_LIMIT in flag["code"]["text"]
        assert BASIS in flag["code"]["text"]
        assert "own lower ANC limit 1.0 10*9/L" in dr["conclusion"]
        assert "CommunicationRequest" not in first
        # ANC 0.3: critical, the same episode: one request to the ordering provider
        second = resources(running.http, report(1, "0.3"))
        (request,) = second["CommunicationRequest"]
        assert request["priority"] == "stat"
        assert request["recipient"][0]["display"] == "Ada Okafor"
        assert "CommunicationRequest" not in resources(running.http, report(2, "0.2"))
        # another patient keeps the adult limit (< 1.5)
        (other,) = resources(running.http, report(0, "1.2", patient="P200"))["Flag"]
        assert "Neutropenia" in other["code"]["text"]
        assert "for this patient" not in other["code"]["text"]


def test_without_the_options_the_service_uses_the_adult_limit_and_asks_nothing(
    tmp_path: Path,
) -> None:
    with service(tmp_path) as running:
        critical = resources(running.http, report(0, "0.3"))
        assert "CommunicationRequest" not in critical
        (flag,) = critical["Flag"]
        assert "for this patient" not in flag["code"]["text"]


@pytest.mark.parametrize(
    ("profile", "why"),
    [
        ("missing.toml", "cannot be read"),
        ("nameless.toml", "name: is missing"),
        ("site.toml", "the header must be"),  # its patient file is broken
    ],
)
def test_a_bad_profile_refuses_the_start_naming_the_setting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], profile: str, why: str
) -> None:
    site(tmp_path)
    (tmp_path / "limits.csv").write_text("patient,limit\nP100,1.0\n", encoding="utf-8")
    (tmp_path / "nameless.toml").write_text('version = "1"\n', encoding="utf-8")
    code = main(["serve", "--out", str(tmp_path / "out"), "--profile", str(tmp_path / profile)])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("leukofhir: bad setting: profile (--profile): ")
    assert why in err
    assert "Traceback" not in err
    assert not (tmp_path / "out").exists()  # refused before anything was made


def test_the_profile_is_loaded_once_per_process_not_per_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: dict[str, int] = {}

    def counted(module: object, name: str) -> None:
        original = getattr(module, name)

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            calls[name] = calls.get(name, 0) + 1
            return original(*args, **kwargs)

        monkeypatch.setattr(module, name, wrapper)

    counted(leukofhir.rules.deployment, "load_deployment")
    counted(leukofhir.rules.deployment, "read_patient_limits")
    counted(leukofhir.rules, "load_rule_set")
    counted(leukofhir.terminology, "load_terminology")
    engine = Settings(profile=str(site(tmp_path / "site")), notify_critical=True)
    messages = [report(day, anc) for day, anc in enumerate(("0.9", "0.3", "0.2", "1.8"))]

    async def scenario() -> list[bytes]:
        async with running(tmp_path / "out", engine) as started:
            peer = await Peer.open(started.port)
            await peer.send(*messages)
            acks = await peer.receive(len(messages))
            await peer.close()
            return acks

    acks = asyncio.run(asyncio.wait_for(scenario(), 60))
    assert [field_of(a, "MSA", 1) for a in acks] == ["AA"] * len(messages)
    assert calls == dict.fromkeys(
        ("load_deployment", "read_patient_limits", "load_rule_set", "load_terminology"), 1
    )

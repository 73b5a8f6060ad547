"""Inputs, commands and oracles for the tests of the wired delivery (``batch``/``deliver``/
``replay --fhir-base``): real leukofhir processes against a real fhir-server."""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import httpx

from tests.batch.helpers import OLD, make_inputs
from tests.conftest import SAMPLES
from tests.delivery.helpers import FHIR_JSON
from tests.fhirserver import FhirServer, canonical

NOW = "2026-01-01T00:00:00+00:00"
SRC = Path(__file__).resolve().parents[2] / "src"


def make_in(folder: Path, *, samples: bool, messages: int, patients: int) -> Path:
    """The HL7 v2 and FHIR samples (``samples``) and ``messages`` generated daily CBCs of
    ``patients`` patients; modification times in name order, so input order is name order."""
    folder.mkdir(parents=True)
    if samples:
        files = sorted(p for p in SAMPLES.iterdir() if p.suffix in {".hl7", ".json", ".ndjson"})
        for n, path in enumerate(files):
            target = folder / f"a{n:03d}-{path.name}"
            shutil.copyfile(path, target)
            os.utime(target, (OLD - 10_000 + n, OLD - 10_000 + n))
    if messages:
        make_inputs(folder, messages, patients=patients, seed=3)
    return folder


def env(**more: str) -> dict[str, str]:
    environ = {k: v for k, v in os.environ.items() if k != "LEUKOFHIR_FHIR_TOKEN"}
    return {**environ, "PYTHONPATH": str(SRC), **more}


def leukofhir(*argv: str) -> list[str]:
    return [sys.executable, "-m", "leukofhir.cli", "--log-format", "json", *argv]


def batch_argv(source: Path, out: Path, base: str, *extra: str) -> list[str]:
    return leukofhir(
        "batch", str(source), "--out", str(out), "--min-age", "0", "--workers", "1",
        "--now", NOW, "--fhir-base", base, *extra,
    )  # fmt: skip


def run(argv: list[str], *, timeout: float = 180, **more: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, env=env(**more), capture_output=True, text=True, timeout=timeout, check=False
    )


def summary(out: Path) -> dict[str, object]:
    data: dict[str, object] = json.loads((out / "summary.json").read_text())
    return data


def bundles_in_order(out: Path) -> list[bytes]:
    """OUT's Bundle files in input order (the ledger's rows by file and offset; the files'
    names sort as their input order), read as files: no outbox involved."""
    with closing(sqlite3.connect(out / "ledger.sqlite")) as db:
        rows = db.execute("SELECT outputs FROM messages ORDER BY source, offset").fetchall()
    names = [n for (outputs,) in rows for n in json.loads(outputs) if n.endswith(".bundle.json")]
    return [(out / name).read_bytes() for name in names]


def outputs_of(out: Path, name: str) -> list[str]:
    """The Bundle outputs of the input files whose name holds ``name``."""
    with closing(sqlite3.connect(out / "ledger.sqlite")) as db:
        rows = db.execute(
            "SELECT outputs FROM messages WHERE instr(source, ?) ORDER BY source, offset", (name,)
        ).fetchall()
    return [n for (outputs,) in rows for n in json.loads(outputs) if n.endswith(".bundle.json")]


def plain_state(server: FhirServer, documents: list[bytes]) -> list[str]:
    """The server's canonical state after ``documents`` went in one by one by plain httpx
    (no leukofhir code), from empty; the server is emptied again afterwards."""
    server.reset()
    with httpx.Client(timeout=60) as client:
        for data in documents:
            response = client.post(server.base, content=data, headers=FHIR_JSON)
            assert response.status_code == 200, response.text[:500]
    state = canonical(server.dump())
    server.reset()
    return state


def outbox_rows(out: Path) -> list[tuple[str, str, int, str]]:
    """(key, patient, seq, state) of every queued document."""
    with closing(sqlite3.connect(out / "ledger.sqlite", timeout=10)) as db:
        rows = db.execute("SELECT key, patient, seq, state FROM outbox ORDER BY seq").fetchall()
    return [(str(k), str(p), int(s), str(st)) for k, p, s, st in rows]


def delivered_count(out: Path) -> int:
    try:
        with closing(sqlite3.connect(out / "ledger.sqlite", timeout=10)) as db:
            (count,) = db.execute(
                "SELECT COUNT(*) FROM outbox WHERE state = 'delivered'"
            ).fetchone()
    except sqlite3.OperationalError:  # not created yet
        return 0
    return int(count)


def attempts(stderr: str) -> list[dict[str, object]]:
    """The ``fhir delivery`` log lines, in the order they were written."""
    lines = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("event") == "fhir delivery"]


_LITERAL = re.compile(rb'"reference":"((?!urn:)[A-Z][A-Za-z]+/[^"/]+)"')


def put_missing(server: FhirServer, documents: list[bytes]) -> list[str]:
    """The fix for documents that name a source server's resources: each resource they name
    that the server lacks, put under its id (minimal); which ones."""
    made = []
    for data in documents:
        for raw in sorted(set(_LITERAL.findall(data))):
            reference = raw.decode()
            if httpx.get(f"{server.base}/{reference}").status_code != 404:
                continue
            kind, ident = reference.split("/")
            resource: dict[str, object] = {"resourceType": kind, "id": ident}
            if kind in {"Observation", "DiagnosticReport"}:
                resource.update(status="final", code={"text": "x"})
            httpx.put(f"{server.base}/{reference}", json=resource).raise_for_status()
            made.append(reference)
    return made

"""``serve --fhir-base``: the real service (two processes, one deliverer) against a real
fhir-server.  ``--ack-after delivered``: each AA only once the server holds the message's
Bundle; AR after ``--ack-timeout`` while the server is away, AA on the re-send once it is
back (never processed twice); a 401 stops delivery and ``/healthz`` says so."""

from __future__ import annotations

import contextlib
import sqlite3
import time
from pathlib import Path

import httpx

from leukofhir.ingest.framing import split_messages
from tests.delivery.wiring import leukofhir, plain_state, run
from tests.fhirserver import FhirServer, canonical, free_port, running_server
from tests.serve.helpers import environment, mllp_exchange, sample, service

TOKEN = "serve-Token.42"


def ask(port: int, message: bytes) -> bytes:
    return mllp_exchange(port, message, timeout=30.0)


def msa(ack: bytes) -> str:
    line = next(s for s in ack.split(b"\r") if s.startswith(b"MSA"))
    return line.split(b"|")[1].decode()


def journal_documents(out: Path) -> list[bytes]:
    """The queued Bundles in their order (seq), read from OUT's files (key j<id>/<name>)."""
    with contextlib.closing(sqlite3.connect(out / "journal.sqlite")) as db:
        keys = [str(k) for (k,) in db.execute("SELECT key FROM outbox ORDER BY seq")]
    return [(out / key.split("/", 1)[1]).read_bytes() for key in keys]


def test_ack_after_delivered_and_the_server_holds_the_plain_route(
    fhir: FhirServer, tmp_path: Path
) -> None:
    names = ("36-chemotherapy-course-neutropenia.hl7", "02-leukopenia-g1-wbc-3p0.hl7")
    messages = [m.data for name in names for m in split_messages(sample(name))]
    options = ("--workers", "2", "--fhir-base", fhir.base, "--ack-after", "delivered")
    with service(tmp_path, ("--shutdown-timeout", "5", *options)) as running:
        for number, message in enumerate(messages, 1):
            assert msa(ask(running.mllp, message)) == "AA"
            # one Bundle per message, each with its Provenance: on the server before the AA
            assert fhir.counts()["Provenance"] == number
        metrics = httpx.get(f"http://127.0.0.1:{running.http}/metrics").text
        health = httpx.get(f"http://127.0.0.1:{running.http}/healthz")
        busy = run(leukofhir("deliver", str(running.out)))  # one deliverer per OUT
    assert health.status_code == 200
    assert busy.returncode == 3
    assert "another process delivers" in busy.stderr
    assert f'leukofhir_outbox_documents{{state="delivered"}} {len(messages)}.0' in metrics
    assert f'leukofhir_fhir_deliveries_total{{result="delivered"}} {len(messages)}.0' in metrics
    assert "leukofhir_fhir_request_seconds_bucket" in metrics
    state = canonical(fhir.dump())
    assert state == plain_state(fhir, journal_documents(running.out))


def test_ack_timeout_while_the_server_is_away_then_the_resend(tmp_path: Path) -> None:
    port = free_port()
    server = FhirServer(tmp_path / "srv", port=port)
    base = f"http://127.0.0.1:{port}/fhir/R4"
    message = sample("03-leukopenia-g2-wbc-2p99.hl7")
    options = ("--fhir-base", base, "--ack-after", "delivered", "--ack-timeout", "1")
    with service(tmp_path, ("--shutdown-timeout", "5", *options)) as running:
        started = time.monotonic()
        first = ask(running.mllp, message)
        assert msa(first) == "AR"
        assert b"not delivered to the FHIR server yet" in first
        assert 1.0 <= time.monotonic() - started < 10
        try:
            server.start()
            deadline = time.monotonic() + 60  # the deliverer's backoff: re-send, as a sender does
            while msa(again := ask(running.mllp, message)) != "AA":
                assert b"not delivered to the FHIR server yet" in again
                assert time.monotonic() < deadline
            assert server.counts()["Provenance"] == 1
        finally:
            server.stop()
        with contextlib.closing(sqlite3.connect(running.out / "journal.sqlite")) as db:
            assert db.execute("SELECT COUNT(*) FROM messages").fetchone() == (1,)


def test_401_stops_delivery_and_healthz_says_so(tmp_path: Path) -> None:
    with running_server(tmp_path / "srv", "--token", TOKEN) as server:
        env = {**environment(), "LEUKOFHIR_FHIR_TOKEN": "wrong-token"}
        options = ("--shutdown-timeout", "5", "--fhir-base", server.base)
        with service(tmp_path, options, env=env) as running:
            assert msa(ask(running.mllp, sample("02-leukopenia-g1-wbc-3p0.hl7"))) == "AA"
            url = f"http://127.0.0.1:{running.http}/healthz"
            deadline = time.monotonic() + 20
            while (health := httpx.get(url)).status_code == 200:
                assert time.monotonic() < deadline
                time.sleep(0.05)
            assert health.status_code == 503
            assert health.json()["status"] == "degraded"
            assert "401" in health.json()["reason"]
            metrics = httpx.get(f"http://127.0.0.1:{running.http}/metrics").text
            assert 'leukofhir_outbox_documents{state="pending"} 1.0' in metrics
            assert 'leukofhir_fhir_deliveries_total{result="stop"} 1.0' in metrics
        log = running.log.read_text()
        assert "wrong-token" not in log
        assert server.counts() == {}
        fixed = run(leukofhir("deliver", str(running.out)), LEUKOFHIR_FHIR_TOKEN=TOKEN)
        assert fixed.returncode == 0, fixed.stderr[-2000:]
        assert server.counts()["Provenance"] == 1

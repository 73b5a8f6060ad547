"""``batch --fhir-base`` end to end: real batch processes against a real fhir-server.  The
oracle is the most plain route: OUT's Bundle files POSTed one by one, in input order, by
plain httpx.  Each scenario (faults, lost answers, a server not up yet, SIGKILLs, a 401, a
400, Medplum's limits) must end with the server holding exactly that: nothing lost,
nothing twice, the Provenance included."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.delivery.wiring import (
    attempts,
    batch_argv,
    bundles_in_order,
    delivered_count,
    env,
    leukofhir,
    make_in,
    outbox_rows,
    outputs_of,
    plain_state,
    put_missing,
    run,
    summary,
)
from tests.fhirserver import FhirServer, canonical, free_port, running_server

TOKEN = "s3cret-Token.for_tests"


@pytest.fixture(scope="module")
def full_in(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every sample (HL7 v2 and FHIR) and 30 daily CBCs of 5 patients."""
    return make_in(tmp_path_factory.mktemp("full") / "in", samples=True, messages=30, patients=5)


@pytest.fixture(scope="module")
def small_in(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """24 daily CBCs of 4 patients: for the scenarios whose faults cost seconds each."""
    return make_in(tmp_path_factory.mktemp("small") / "in", samples=False, messages=24, patients=4)


@pytest.fixture(scope="module")
def full_clean(
    plain_server: FhirServer, full_in: Path, tmp_path_factory: pytest.TempPathFactory
) -> list[str]:
    """The clean run's state; asserted equal to the plain route's by the first test."""
    plain_server.reset()
    out = tmp_path_factory.mktemp("clean") / "out"
    done = run(batch_argv(full_in, out, plain_server.base))
    assert done.returncode == 1, done.stderr[-2000:]  # rejected samples, on purpose
    state = canonical(plain_server.dump())
    assert state == plain_state(plain_server, bundles_in_order(out))
    return state


@pytest.fixture(scope="module")
def small_clean(
    plain_server: FhirServer, small_in: Path, tmp_path_factory: pytest.TempPathFactory
) -> list[str]:
    plain_server.reset()
    out = tmp_path_factory.mktemp("small-clean") / "out"
    done = run(batch_argv(small_in, out, plain_server.base))
    assert done.returncode == 0, done.stderr[-2000:]
    state = canonical(plain_server.dump())
    assert state == plain_state(plain_server, bundles_in_order(out))
    return state


def test_clean_batch_equals_the_plain_route(
    fhir: FhirServer, full_in: Path, full_clean: list[str], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    done = run(batch_argv(full_in, out, fhir.base, "--workers", "2"))
    assert done.returncode == 1  # the rejected samples; nothing of delivery
    assert canonical(fhir.dump()) == full_clean
    documents = bundles_in_order(out)
    delivery = summary(out)["delivery"]
    assert isinstance(delivery, dict)
    assert delivery["documents"]["delivered"] == len(documents) > 100
    assert delivery["documents"]["pending"] == delivery["documents"]["dead"] == 0
    assert delivery["this_run"] == {"delivered": len(documents)}
    assert "delivery to " in done.stdout
    # every Bundle file is queued under its own name, in input order
    rows = outbox_rows(out)
    assert [(out / key).read_bytes() for key, *_ in rows] == documents
    # a second run: nothing new, nothing sent, the server unchanged
    again = run(batch_argv(full_in, out, fhir.base))
    assert again.returncode == 1
    assert attempts(again.stderr) == []
    assert canonical(fhir.dump()) == full_clean


def test_503s_with_retry_after_and_per_patient_order(
    small_in: Path, small_clean: list[str], tmp_path: Path
) -> None:
    with running_server(tmp_path / "srv", "--fail-rate", "0.3", "--seed", "5") as server:
        done = run(batch_argv(small_in, tmp_path / "out", server.base, "--fhir-concurrency", "4"))
        state = canonical(server.dump())
    assert done.returncode == 0, done.stderr[-2000:]
    assert state == small_clean
    lines = attempts(done.stderr)
    assert sum(line["status"] == 503 for line in lines) >= 3  # the faults happened
    # never an attempt at a patient's document before the previous one was delivered
    order = {key: (patient, seq) for key, patient, seq, _ in outbox_rows(tmp_path / "out")}
    delivered: dict[str, int] = {}
    for line in lines:
        patient, seq = order[str(line["key"])]
        assert delivered.get(patient, 0) < seq
        if line["verdict"] == "delivered":
            earlier = [s for p, s in order.values() if p == patient and s < seq]
            assert delivered.get(patient, 0) == max(earlier, default=0)
            delivered[patient] = seq
    assert len({patient for patient, _ in order.values()}) == 4


def test_answers_later_than_the_client_waits(
    small_in: Path, small_clean: list[str], tmp_path: Path
) -> None:
    """Every write is applied, every answer comes after the client gave up: retried until
    ``--fhir-retry-for``, then dead letters (their patients' later documents held);
    ``deliver --retry-dead`` with a patient client then finds them all applied."""
    out = tmp_path / "out"
    with running_server(tmp_path / "srv", "--delay-ms", "600") as server:
        impatient = ("--fhir-timeout", "0.2", "--fhir-retry-for", "2s")
        done = run(batch_argv(small_in, out, server.base, *impatient))
        assert done.returncode == 1
        documents = summary(out)["delivery"]["documents"]  # type: ignore[index]
        assert documents["dead"] == 4  # the first document of each patient
        assert documents["held_behind_dead_letter"] == documents["pending"] == 20
        assert len(list((out / "dead").glob("*.bundle.json"))) == 4
        fixed = run(leukofhir("deliver", str(out), "--retry-dead", "--fhir-timeout", "10"))
        assert fixed.returncode == 0, fixed.stderr[-2000:]
        state = canonical(server.dump())
    assert state == small_clean
    assert json.loads(fixed.stdout.splitlines()[-1])["delivered"] == 24
    assert not list((out / "dead").iterdir())


def test_a_server_that_is_not_up_yet(
    small_in: Path, small_clean: list[str], tmp_path: Path
) -> None:
    port = free_port()
    server = FhirServer(tmp_path / "srv", port=port)
    base = f"http://127.0.0.1:{port}/fhir/R4"
    process = subprocess.Popen(
        batch_argv(small_in, tmp_path / "out", base),
        env=env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(2.0)
        assert process.poll() is None  # retrying
        server.start()
        _, stderr = process.communicate(timeout=120)
        state = canonical(server.dump())
    finally:
        if process.poll() is None:
            process.kill()
        server.stop()
    assert process.returncode == 0, stderr[-2000:]
    assert any(line["status"] is None for line in attempts(stderr))  # refused, retried
    assert state == small_clean


def test_sigkill_three_times_mid_delivery_then_resume(
    fhir: FhirServer, full_in: Path, full_clean: list[str], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    kills = 0
    for _ in range(3):
        before = delivered_count(out)
        process = subprocess.Popen(
            batch_argv(full_in, out, fhir.base),
            env=env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 120
        while delivered_count(out) < before + 5 and process.poll() is None:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            kills += 1
        process.wait()
    assert kills == 3
    total = len(bundles_in_order(out)) if (out / "ledger.sqlite").exists() else 0
    assert 0 < delivered_count(out) < max(total, 1)  # killed in the middle of delivery
    done = run(batch_argv(full_in, out, fhir.base))
    assert done.returncode == 1, done.stderr[-2000:]
    assert canonical(fhir.dump()) == full_clean
    assert summary(out)["delivery"]["documents"]["delivered"] == len(bundles_in_order(out))  # type: ignore[index]


def test_401_stops_the_batch_with_everything_pending(
    small_in: Path, small_clean: list[str], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    wrong = tmp_path / "wrong-token"
    wrong.write_text("not-the-token\n")
    with running_server(tmp_path / "srv", "--token", TOKEN) as server:
        done = run(batch_argv(small_in, out, server.base, "--fhir-token-file", str(wrong)))
        assert done.returncode == 3
        assert "401" in done.stderr
        assert "not-the-token" not in done.stderr + done.stdout
        delivery = summary(out)["delivery"]
        assert isinstance(delivery, dict)
        assert delivery["documents"]["delivered"] == 0
        assert delivery["documents"]["pending"] == len(outbox_rows(out)) > 0
        assert "401" in delivery["stopped"]
        assert server.counts() == {}
        # the batch stopped early, like for a full disk: the same command, with the token
        # fixed, processes the rest and delivers everything
        fixed = run(batch_argv(small_in, out, server.base), LEUKOFHIR_FHIR_TOKEN=TOKEN)
        assert fixed.returncode == 0, fixed.stderr[-2000:]
        assert TOKEN not in fixed.stderr + fixed.stdout
        state = canonical(server.dump())
    assert state == small_clean


def test_400_is_a_dead_letter_held_patient_then_retry_dead(
    fhir: FhirServer, tmp_path: Path
) -> None:
    """FHIR samples written for their source server (``--fhir-target source``) name its
    resources: 400 from this server.  A dead letter each (the rest delivered), a patient's
    later document held behind its dead letter; after the fix (the named resources put
    on the server) ``deliver --retry-dead`` delivers them, the held one after its dead one."""
    source = make_in(tmp_path / "in", samples=True, messages=0, patients=0)
    for path in source.iterdir():
        if not path.name[5:].startswith("f0"):
            path.unlink()
    out = tmp_path / "out"
    done = run(batch_argv(source, out, fhir.base, "--fhir-target", "source"))
    assert done.returncode == 1
    delivery = summary(out)["delivery"]
    assert isinstance(delivery, dict)
    documents = delivery["documents"]
    dead = list((out / "dead").glob("*.bundle.json"))
    assert documents["dead"] == len(dead) == len(delivery["dead_letters"]) >= 5
    assert documents["held_behind_dead_letter"] == 1  # f05 waits behind f01 (one patient)
    assert documents["delivered"] >= 1  # the Bundles that name nothing of the source server
    assert all(letter["status"] == 400 for letter in delivery["dead_letters"])
    before = fhir.counts()

    status = run(leukofhir("deliver", str(out), "--status"))
    assert status.returncode == 1
    assert json.loads(status.stdout)["dead"] == documents["dead"]

    waiting = [out / key for key, _, _, state in outbox_rows(out) if state != "delivered"]
    assert put_missing(fhir, [path.read_bytes() for path in waiting])
    fixed = run(leukofhir("deliver", str(out), "--retry-dead"))
    assert fixed.returncode == 0, fixed.stderr[-2000:]
    counts = json.loads(fixed.stdout.splitlines()[-1])
    assert counts["delivered"] == len(outbox_rows(out))
    assert (counts["dead"], counts["pending"]) == (0, 0)
    assert not list((out / "dead").iterdir())
    assert sum(fhir.counts().values()) > sum(before.values())
    keys = [str(line["key"]) for line in attempts(fixed.stderr)]
    (first,) = outputs_of(out, "f01-")
    (held,) = outputs_of(out, "f05-")
    assert keys.index(first) < keys.index(held)  # the held one after its dead letter


def test_abandoning_a_dead_letter_releases_its_patient(fhir: FhirServer, tmp_path: Path) -> None:
    """f01 (dead) holds f05 (the same patient); given up with ``--abandon``, the line goes
    on: f05 is sent (and, naming the source server too, dies in turn)."""
    source = make_in(tmp_path / "in", samples=True, messages=0, patients=0)
    for path in source.iterdir():
        if path.name[5:8] not in {"f01", "f05"}:
            path.unlink()
    out = tmp_path / "out"
    assert run(batch_argv(source, out, fhir.base, "--fhir-target", "source")).returncode == 1
    status = json.loads(run(leukofhir("deliver", str(out), "--status")).stdout)
    assert (status["dead"], status["held_behind_dead_letter"]) == (1, 1)
    (letter,) = status["dead_letters"]
    assert letter["key"] == outputs_of(out, "f01-")[0]
    given_up = run(leukofhir("deliver", str(out), "--abandon", str(letter["id"])))
    assert given_up.returncode == 1  # f05 is still pending
    sent = run(leukofhir("deliver", str(out)))
    assert [line["key"] for line in attempts(sent.stderr)] == outputs_of(out, "f05-")
    final = json.loads(sent.stdout.splitlines()[-1])
    assert (final["abandoned"], final["dead"], final["pending"]) == (1, 1, 0)


@pytest.fixture(scope="module")
def medplum(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FhirServer]:
    with running_server(tmp_path_factory.mktemp("medplum"), "--medplum-limits") as server:
        yield server


def test_medplum_limits_with_the_medplum_profile(
    medplum: FhirServer, small_in: Path, small_clean: list[str], tmp_path: Path
) -> None:
    medplum.reset()
    refused = run(batch_argv(small_in, tmp_path / "a", medplum.base))
    assert refused.returncode == 1  # too many conditional entries: dead letters
    assert summary(tmp_path / "a")["delivery"]["documents"]["dead"] == 4  # type: ignore[index]
    medplum.reset()
    done = run(
        batch_argv(small_in, tmp_path / "b", medplum.base, "--fhir-server-profile", "medplum")
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert canonical(medplum.dump()) == small_clean
    assert all(int(line["requests"]) >= 2 for line in attempts(done.stderr))  # in parts

"""Clients we did not write, against the real ``leukofhir serve`` (a subprocess on
127.0.0.1, ports chosen by the OS): python-hl7's ``mllp_send`` command and its asyncio
client (``hl7.mllp``), and ``mllp2http`` (package mllp-http) relaying MLLP to our HTTP API.

Their quirks must not break us: ``mllp_send`` reads each ACK with one ``recv(4096)`` and
strips the final ``\\r`` of every message; its ``--loose`` reader sends what precedes the
first ``MSH|^~\\&|`` (a UTF-8 BOM, say) as a message of its own; ``mllp2http`` drops the
connection on any non-2xx HTTP answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import hl7
import httpx
import pytest
from hl7.mllp import HL7StreamReader, open_hl7_connection
from prometheus_client.parser import text_string_to_metric_families

from leukofhir.serve.journal import Journal
from tests.conftest import ROOT, SAMPLES
from tests.serve.helpers import TIMEOUT_PROCESS as TIMEOUT
from tests.serve.helpers import Service, field_of, outputs, reap, service, wait_until

BIN = Path(sys.executable).parent
MLLP_SEND = BIN / "mllp_send"
MLLP2HTTP = BIN / "mllp2http"
BOM = b"\xef\xbb\xbf"
EXPECTATIONS = {
    entry["file"]: entry["messages"]
    for entry in json.loads((ROOT / "tests" / "sample_expectations.json").read_text())
}
ACK_CODES = {"processed": {"AA"}, "skipped": {"AA"}, "rejected": {"AE", "AR"}}


# -- the service and the relay as subprocesses ------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def accepts(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        return True
    return False


@contextlib.contextmanager
def relay(folder: Path, http_port: int) -> Iterator[int]:
    """``mllp2http`` on a free loopback port, forwarding to our POST /hl7v2."""
    port, log = free_port(), folder / "mllp2http.log"
    with log.open("wb") as stderr:
        process = subprocess.Popen(
            [
                str(MLLP2HTTP),
                *("--host", "127.0.0.1", "--port", str(port), "--timeout", "10000"),
                f"http://127.0.0.1:{http_port}/hl7v2",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    try:
        wait_until(lambda: accepts(port), "mllp2http listening", process, log)
        yield port
        text = log.read_text(errors="replace")
        assert "error" not in text.lower(), text[-3000:]
    finally:
        process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(10)
        reap(process)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    with service(tmp_path_factory.mktemp("serve")) as running:
        yield running


# -- reading what we send and what comes back ----------------------------------------------


def split_messages(data: bytes) -> list[bytes]:
    """The messages of a sample file (our own reading: segments start a message at MSH;
    batch envelope segments are dropped), with ``\\r`` segment ends."""
    lines = data.removeprefix(BOM).replace(b"\r\n", b"\r").replace(b"\n", b"\r").split(b"\r")
    messages: list[list[bytes]] = []
    for line in lines:
        if line.startswith(b"MSH"):
            messages.append([line])
        elif line and line[:3] not in (b"FHS", b"BHS", b"BTS", b"FTS") and messages:
            messages[-1].append(line)
    return [b"\r".join(m) + b"\r" for m in messages]


def control_ids(data: bytes) -> list[str]:
    return [field_of(m, "MSH", 10) for m in split_messages(data)]


def msa(ack: bytes) -> tuple[str, str]:
    return field_of(ack, "MSA", 1), field_of(ack, "MSA", 2)


def mllp_send(port: int, file: Path, *, loose: bool) -> list[bytes]:
    """Run ``mllp_send``; the ACKs it printed, one per line.  Each line is what one
    ``recv(4096)`` returned: it must be exactly one whole frame."""
    done = subprocess.run(
        [
            str(MLLP_SEND),
            *("--file", str(file), "--port", str(port)),
            *(["--loose"] if loose else []),
            "127.0.0.1",
        ],
        capture_output=True,
        timeout=TIMEOUT,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    assert done.stdout.endswith(b"\n")
    acks = []
    for line in done.stdout[:-1].split(b"\n"):
        assert line.startswith(b"\x0b"), line
        assert line.endswith(b"\x1c\r"), line  # the whole ACK in one recv
        assert line.count(b"\x0b") == 1, line  # and only one
        acks.append(line[1:-2])
    return acks


def expected_codes(name: str) -> list[set[str]]:
    return [ACK_CODES[m["outcome"]] for m in EXPECTATIONS[name]]


def written_for(out: Path, control_id: str, disposition: str) -> list[str]:
    return [n for n in outputs(out) if n.startswith(f"{disposition}/") and f"/{control_id}_" in n]


def check_outputs(out: Path, name: str, ids: list[str]) -> None:
    for control_id, expected in zip(ids, EXPECTATIONS[name], strict=True):
        found = written_for(out, control_id, expected["outcome"])
        assert found, (name, control_id, expected["outcome"])
        if expected["outcome"] == "processed":
            bundles = [n for n in found if n.endswith(".bundle.json")]
            assert len(bundles) >= len(expected["reports"]), found
            for bundle in bundles:
                assert json.loads((out / bundle).read_bytes())["resourceType"] == "Bundle"
        if expected["outcome"] == "rejected":
            assert any(n.endswith(".hl7") for n in found), found


def metric(port: int, name: str, **labels: str) -> float:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=TIMEOUT).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    return 0.0


# -- mllp_send ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "10-pancytopenia.hl7",  # four messages, one connection
        "13-unit-spellings.hl7",  # nine messages, UTF-8 µ, escapes
        "16-lf-line-endings.hl7",
        "20-good-bad-good.hl7",  # AA, AE, AA on one connection
        "28-crlf-line-endings.hl7",
        "31-neutropenia-band-edges.hl7",  # seven messages
    ],
)
def test_mllp_send_loose_gets_one_ack_per_message(server: Service, name: str) -> None:
    data = (SAMPLES / name).read_bytes()
    ids = control_ids(data)
    assert ids == [m["control_id"] for m in EXPECTATIONS[name]]
    acks = mllp_send(server.mllp, SAMPLES / name, loose=True)
    assert [msa(a)[1] for a in acks] == ids
    for ack, codes in zip(acks, expected_codes(name), strict=True):
        assert msa(ack)[0] in codes, ack
        assert field_of(ack, "MSH", 9).startswith("ACK^")
    check_outputs(server.out, name, ids)


def test_mllp_send_loose_on_a_bom_file(server: Service) -> None:
    """``--loose`` sends the BOM before ``MSH|^~\\&|`` as a message of its own
    (``MSH|^~\\&|<BOM>``): it gets an AE (no MSH-10 to echo), the real message its AA."""
    name = "34-utf8-bom.hl7"
    assert (SAMPLES / name).read_bytes().startswith(BOM)
    (control_id,) = control_ids((SAMPLES / name).read_bytes())
    acks = mllp_send(server.mllp, SAMPLES / name, loose=True)
    assert [msa(a) for a in acks] == [("AE", ""), ("AA", control_id)]
    assert "MSH^1^9" in acks[0].decode(errors="replace")  # the fragment has no MSH-9
    check_outputs(server.out, name, [control_id])


def test_mllp_send_with_framed_files_as_sent_bytes(server: Service, tmp_path: Path) -> None:
    """Without ``--loose`` mllp_send sends each frame's bytes as they are in the file (less
    the final ``\\r``): a BOM inside the frame, ``\\r\\n`` ends, several frames."""
    cases: dict[str, tuple[str, Callable[[bytes], bytes]]] = {
        # file: (sample, how it is changed)
        "bom.mllp": ("06-neutropenia-only.hl7", lambda m: BOM + m),
        "crlf.mllp": ("09-leukocytosis.hl7", lambda m: m.replace(b"\r", b"\r\n")),
        "many.mllp": ("32-lymphopenia-band-edges.hl7", lambda m: m),
        "utf8.mllp": ("08-eosinophilia-basophilia.hl7", lambda m: m),
        "adt.mllp": ("19-wrong-message-type-adt.hl7", lambda m: m),
        "skipped.mllp": ("35-local-codes-only.hl7", lambda m: m),
    }
    for file, (name, change) in cases.items():
        messages = split_messages((SAMPLES / name).read_bytes())
        framed = b"".join(b"\x0b" + change(m) + b"\x1c\r" for m in messages)
        (tmp_path / file).write_bytes(framed)
        ids = control_ids(b"".join(messages))
        acks = mllp_send(server.mllp, tmp_path / file, loose=False)
        assert [msa(a)[1] for a in acks] == ids, file
        for ack, codes in zip(acks, expected_codes(name), strict=True):
            assert msa(ack)[0] in codes, (file, ack)
        check_outputs(server.out, name, ids)
    adt = mllp_send(server.mllp, tmp_path / "adt.mllp", loose=False)
    assert msa(adt[0])[0] == "AR"


def test_mllp_send_again_gets_the_same_acks_and_no_new_output(server: Service) -> None:
    name = "33-other-threshold-edges.hl7"
    first = mllp_send(server.mllp, SAMPLES / name, loose=True)
    assert [msa(a) for a in first] == [
        ("AA", i) for i in control_ids((SAMPLES / name).read_bytes())
    ]
    before = {n: (server.out / n).stat().st_mtime_ns for n in outputs(server.out)}
    duplicates = metric(
        server.http, "leukofhir_messages_total", channel="mllp", outcome="duplicate"
    )
    again = mllp_send(server.mllp, SAMPLES / name, loose=True)
    assert again == first  # byte for byte, MSH-7 and MSH-10 included
    assert {n: (server.out / n).stat().st_mtime_ns for n in outputs(server.out)} == before
    assert metric(
        server.http, "leukofhir_messages_total", channel="mllp", outcome="duplicate"
    ) == duplicates + len(first)


def test_mllp_send_gets_a_long_ack_whole(server: Service, tmp_path: Path) -> None:
    """A message that earns many warnings quoting long values (every OBX with a 300-character
    unit) still gets its ACK within mllp_send's single recv(4096)."""
    lines = split_messages((SAMPLES / "01-normal-cbc-5-part-diff.hl7").read_bytes())[0].split(b"\r")
    for index, line in enumerate(lines):
        if line.startswith(b"OBX|"):
            fields = line.split(b"|")
            fields[6] = b"u" * 300 + b"/L"
            lines[index] = b"|".join(fields)
    message = b"\r".join(lines).replace(b"HL25011408301500017", b"LONGACK0001")
    (tmp_path / "long.hl7").write_bytes(message)
    (ack,) = mllp_send(server.mllp, tmp_path / "long.hl7", loose=True)  # whole, one recv
    assert msa(ack)[1] == "LONGACK0001"
    assert len(ack) < 4096 - 3
    errs = [line for line in ack.split(b"\r") if line.startswith(b"ERR|")]
    assert errs
    assert b"OperationOutcome" in errs[-1]  # the rest is said to be there


# -- python-hl7's asyncio client ------------------------------------------------------------


async def next_msa(reader: HL7StreamReader) -> tuple[str, str]:
    """MSA-1 and MSA-2 of the next ACK (fails the test after TIMEOUT)."""
    async with asyncio.timeout(TIMEOUT):
        ack = await reader.readmessage()
    return str(ack.segment("MSA")[1]), str(ack.segment("MSA")[2])


def test_hl7_asyncio_client_many_messages_on_one_connection(server: Service) -> None:
    one_by_one = [
        "27-leukopenia-g3-g4-edges.hl7",
        "05-leukopenia-g4-agranulocytosis.hl7",
        "24-escapes-and-truncation-char.hl7",
        "12-segmented-and-band-neutrophils.hl7",
    ]
    pipelined = ["14-preliminary-then-corrected.hl7", "25-nrbc-corrected-wbc.hl7"]

    def texts(name: str) -> list[str]:
        return [m.decode() for m in split_messages((SAMPLES / name).read_bytes())]

    async def scenario() -> list[tuple[str, str]]:
        got: list[tuple[str, str]] = []
        reader, writer = await open_hl7_connection("127.0.0.1", server.mllp, encoding="utf-8")
        try:
            for name in one_by_one:
                for text in texts(name):
                    writer.writemessage(hl7.parse(text))  # an hl7.Message
                    await writer.drain()
                    got.append(await next_msa(reader))
            batch = [t.rstrip("\r") for name in pipelined for t in texts(name)]
            for text in batch:  # all written before the first ACK is read; no final \r
                writer.writemessage(text)
            await writer.drain()
            for _ in batch:
                got.append(await next_msa(reader))
        finally:
            writer.close()
            await writer.wait_closed()
        return got

    got = asyncio.run(asyncio.wait_for(scenario(), 2 * TIMEOUT))
    names = one_by_one + pipelined
    expected = [("AA", m["control_id"]) for name in names for m in EXPECTATIONS[name]]
    assert got == expected  # strict order, one ACK each
    for name in names:
        check_outputs(server.out, name, [m["control_id"] for m in EXPECTATIONS[name]])


# -- mllp2http in front of POST /hl7v2 ----------------------------------------------------------


def test_mllp2http_relays_our_acks_including_ae_and_ar(server: Service, tmp_path: Path) -> None:
    """python-hl7's asyncio client → mllp2http → POST /hl7v2: every ACK comes back, AE and
    AR included (mllp2http drops the connection on a non-2xx answer, so /hl7v2 answers 200
    whatever MSA-1 says).  Not mllp_send: mllp2http writes each frame in three sends
    (0x0B, the message, 0x1C 0x0D) and mllp_send's single recv(4096) then gets a lone 0x0B."""
    names = [
        "07-lymphopenia.hl7",  # AA, AA
        "19-wrong-message-type-adt.hl7",  # AR
        "18-malformed-msh.hl7",  # AE, MSH-10 unreadable
        "29-monocytopenia.hl7",  # AA: the relay kept the connection
    ]
    messages = [m for name in names for m in split_messages((SAMPLES / name).read_bytes())]
    expected = [("AA", i) for i in control_ids((SAMPLES / names[0]).read_bytes())] + [
        ("AR", control_ids((SAMPLES / names[1]).read_bytes())[0]),
        ("AE", ""),
        ("AA", control_ids((SAMPLES / names[3]).read_bytes())[0]),
    ]

    def http_total() -> float:
        return sum(
            metric(server.http, "leukofhir_messages_total", channel="http", outcome=o)
            for o in ("processed", "rejected", "skipped", "duplicate")
        )

    async def scenario(port: int) -> list[tuple[str, str]]:
        got = []
        reader, writer = await open_hl7_connection("127.0.0.1", port, encoding="utf-8")
        try:
            for message in messages:
                writer.writemessage(message.decode().rstrip("\r"))
                await writer.drain()
                got.append(await next_msa(reader))
        finally:
            writer.close()
            await writer.wait_closed()
        return got

    before = http_total()
    with relay(tmp_path, server.http) as port:
        got = asyncio.run(asyncio.wait_for(scenario(port), 2 * TIMEOUT))
    assert got == expected
    assert http_total() - before == len(messages)  # they came in over HTTP, not MLLP
    for name in (names[0], names[1], names[3]):
        check_outputs(server.out, name, control_ids((SAMPLES / name).read_bytes()))


# -- shutdown --------------------------------------------------------------------------------


def test_sigterm_with_a_client_connected_stops_cleanly(tmp_path: Path) -> None:
    message = split_messages((SAMPLES / "03-leukopenia-g2-wbc-2p99.hl7").read_bytes())[0]
    with service(tmp_path) as running:

        async def scenario() -> bytes:
            reader, writer = await open_hl7_connection("127.0.0.1", running.mllp)
            try:
                writer.writemessage(message.decode().rstrip("\r"))
                await writer.drain()
                assert (await next_msa(reader))[0] == "AA"
                running.process.send_signal(signal.SIGTERM)  # the connection is idle now
                async with asyncio.timeout(TIMEOUT):
                    rest = await reader.read()  # the service closes it
            finally:
                writer.close()
                with contextlib.suppress(ConnectionError):
                    await writer.wait_closed()
            return bytes(rest)

        assert asyncio.run(asyncio.wait_for(scenario(), 2 * TIMEOUT)) == b""
        log = running.stop()  # exit 0, no traceback
        assert '"event":"stopping"' in log
        journal = Journal(running.out)
        assert journal.counts() == {"processed": 1}
        journal.close()

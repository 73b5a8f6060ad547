"""Credentials and transport security: a bearer token from a file or the environment,
never shown (repr, logs, the outbox); 401 stops all delivery with everything kept; TLS is
verified, against the system's CAs or the one given."""

from __future__ import annotations

import asyncio
import http.server
import json
import pickle
import secrets
import shutil
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from leukofhir.delivery import FhirServer, Token, TransactionClient, Verdict, read_token
from tests.delivery.helpers import DOCS, deliver, fresh_outbox
from tests.fhirserver import running_server


def test_token_sources_and_form(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("abc.DEF-123_~+/==\n")
    assert read_token(path, {"LEUKOFHIR_FHIR_TOKEN": "other"}).reveal() == "abc.DEF-123_~+/=="  # type: ignore[union-attr]
    assert read_token(None, {"LEUKOFHIR_FHIR_TOKEN": " env-token "}).reveal() == "env-token"  # type: ignore[union-attr]
    assert read_token(None, {}) is None
    assert read_token(None, {"LEUKOFHIR_FHIR_TOKEN": "  "}) is None
    path.write_text("has space secret-part")
    with pytest.raises(ValueError, match="RFC 6750") as caught:
        read_token(path, {})
    assert "secret-part" not in str(caught.value)
    with pytest.raises(ValueError, match="cannot read"):
        read_token(tmp_path / "missing", {})


def test_a_token_never_shows_itself() -> None:
    token = Token("s3cr3t-value")
    server = FhirServer("https://fhir.example.org/r4", token=token)
    for text in (repr(token), str(token), f"{token}", repr(server), str(server)):
        assert "s3cr3t" not in text
    assert "s3cr3t" not in repr(TransactionClient(server))
    with pytest.raises(TypeError):
        pickle.dumps(token)


@pytest.mark.parametrize(
    ("base", "message"),
    [
        ("http://fhir.example.org/r4", "https only"),
        ("ftp://fhir.example.org/r4", "http"),
        ("https://user:pw@fhir.example.org/r4", "credentials"),
    ],
)
def test_server_settings_refused(base: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        FhirServer(base, token=Token("t"))


def test_401_stops_everything_pending_kept_and_the_token_is_never_logged(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = "leukofhir-test-" + secrets.token_urlsafe(24)
    docs = DOCS[:6]
    with running_server(tmp_path / "srv", "--token", secret) as server:
        outbox = fresh_outbox(tmp_path, docs)
        for token in (None, Token("wrong-token")):
            summary = deliver(outbox, server.base, token=token)
            assert summary.stopped is not None
            assert summary.stopped.status == 401
            assert summary.delivered == 0
            assert summary.attempts <= 4  # what was in flight; nothing started after
            counts = outbox.counts(time.time())
            assert (counts.pending, counts.dead, counts.retries) == (len(docs), 0, 0)

        (tmp_path / "token").write_text(secret + "\n")
        token = read_token(tmp_path / "token", {})
        summary = deliver(outbox, server.base, token=token)
        assert summary.delivered == len(docs)
        assert summary.stopped is None
    logs = capsys.readouterr()
    assert '"status":401' in logs.err  # the stops were logged
    assert secret not in logs.err + logs.out
    stored = b"".join(p.read_bytes() for p in tmp_path.glob("outbox.sqlite*"))
    assert secret.encode() not in stored


# ---------------------------------------------------------------- TLS


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA and a certificate for 127.0.0.1 signed by it (openssl, EC keys)."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    folder = tmp_path_factory.mktemp("tls")
    (folder / "ext").write_text(
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
    )
    ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
    steps = [
        f"req -x509 {ec} -keyout ca.key -out ca.pem -days 2 -subj /CN=leukofhir-test-CA"
        " -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign",
        f"req {ec} -keyout server.key -out server.csr -subj /CN=127.0.0.1",
        "x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem"
        " -days 2 -extfile ext",
    ]
    for step in steps:
        subprocess.run(["openssl", *step.split()], cwd=folder, check=True, capture_output=True)
    return folder


class _TransactionAnswerer(http.server.BaseHTTPRequestHandler):
    """Answers a transaction with 201 for each entry (enough to see TLS and the header)."""

    seen_authorization: list[str] = []  # noqa: RUF012

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.seen_authorization.append(self.headers.get("Authorization", ""))
        entries = [{"response": {"status": "201"}} for _ in body["entry"]]
        data = json.dumps(
            {"resourceType": "Bundle", "type": "transaction-response", "entry": entries}
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/fhir+json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def https_base(tls_files: Path) -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _TransactionAnswerer)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tls_files / "server.pem", tls_files / "server.key")
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}/fhir"
    finally:
        server.shutdown()
        server.server_close()


def post(server: FhirServer) -> Verdict:
    async def once() -> Verdict:
        async with TransactionClient(server) as client:
            return (await client.post(DOCS[0], DOCS[0].count(b'"request":'))).verdict

    return asyncio.run(once())


def test_tls_is_verified_against_the_given_ca(https_base: str, tls_files: Path) -> None:
    _TransactionAnswerer.seen_authorization.clear()
    token = Token("tls-token")
    trusted = FhirServer(https_base, token=token, ca_file=tls_files / "ca.pem")
    assert post(trusted) is Verdict.DELIVERED
    assert _TransactionAnswerer.seen_authorization == ["Bearer tls-token"]
    # Without the CA (the system's store does not know it): stop, nothing sent.
    assert post(FhirServer(https_base, token=token)) is Verdict.STOP
    assert _TransactionAnswerer.seen_authorization == ["Bearer tls-token"]

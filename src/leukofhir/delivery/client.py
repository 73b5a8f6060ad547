"""The transport: POST one transaction Bundle to a FHIR server's base with httpx, and read
the answer (:mod:`.answer`).

* HTTP/1.1 with keep-alive, one connection pool sized to the delivery concurrency;
  HTTP/2 only when asked (``http2=True`` needs ``pip install 'httpx[http2]'``).
* Explicit timeouts: ``connect_timeout`` to open a connection, ``timeout`` for each of
  write, read and waiting for a pooled connection.
* TLS is verified (the system's CA store, or ``ca_file``); there is no switch to turn it off.
* Authentication: a bearer token (RFC 6750) read from a file or from
  ``LEUKOFHIR_FHIR_TOKEN`` (:func:`read_token`), never from the command line.  A
  :class:`Token` does not show its value in ``repr``/``str``; it is sent only over https
  or to a loopback address.
* ``Prefer: return=minimal``: the server may leave the resources out of its answer (we read
  only the statuses and locations).

Every exchange is timed and reported to ``observe(status or None, seconds)`` (the metrics
hook); a request that got no answer becomes :func:`.answer.no_answer` (retry), or a stop
when the server's TLS certificate is not trusted (a configuration error, not a fault).
"""

from __future__ import annotations

import ipaddress
import ssl
import time
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Self
from urllib.parse import urlsplit

import httpx

from leukofhir import __version__
from leukofhir.delivery.answer import Answer, no_answer, read_answer
from leukofhir.delivery.policy import Verdict

__all__ = ["TOKEN_ENV", "FhirServer", "Token", "TransactionClient", "read_token"]

TOKEN_ENV = "LEUKOFHIR_FHIR_TOKEN"
FHIR_JSON = "application/fhir+json"

Observe = Callable[[int | None, float], None]


class Token:
    """A bearer token that never shows itself (``repr``, ``str``, logs, tracebacks)."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        value = value.strip()
        # RFC 6750 b64token: 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
        body = value.rstrip("=")
        if not body or not all(c.isascii() and (c.isalnum() or c in "-._~+/") for c in body):
            raise ValueError("the FHIR bearer token is empty or has characters RFC 6750 forbids")
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Token('***')"

    __str__ = __repr__

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("a Token is not pickled")


def read_token(token_file: Path | None, environ: Mapping[str, str]) -> Token | None:
    """The token from ``token_file`` (first) or ``LEUKOFHIR_FHIR_TOKEN``, or None."""
    if token_file is not None:
        try:
            text = token_file.read_text("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"cannot read the FHIR token file {token_file}: {exc}") from None
        return Token(text)
    value = environ.get(TOKEN_ENV, "")
    return Token(value) if value.strip() else None


@dataclass(frozen=True, slots=True)
class FhirServer:
    """Where and how to deliver."""

    base: str  # the FHIR base URL; transactions are POSTed to it
    token: Token | None = field(default=None, repr=False)
    ca_file: Path | None = None  # trust this CA bundle (PEM) instead of the system's
    timeout: float = 30.0  # seconds for write, read and a free pooled connection
    connect_timeout: float = 5.0
    connections: int = 4  # pool size (the delivery concurrency)
    http2: bool = False

    def __post_init__(self) -> None:
        parts = urlsplit(self.base)
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise ValueError("the FHIR base must be an http(s) URL")
        if parts.username or parts.password:
            raise ValueError("the FHIR base must not hold credentials; use a token file")
        if self.token is not None and parts.scheme == "http" and not _loopback(parts.hostname):
            raise ValueError("a bearer token is sent over https only (or to a loopback address)")
        if self.timeout <= 0 or self.connect_timeout <= 0 or self.connections < 1:
            raise ValueError("timeouts must be positive and connections at least 1")


class TransactionClient:
    """One connection pool to one FHIR server; use as ``async with``."""

    def __init__(
        self,
        server: FhirServer,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        observe: Observe | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.server = server
        self._observe = observe
        self._clock = clock
        verify: ssl.SSLContext | bool = True
        if server.ca_file is not None:
            verify = ssl.create_default_context(cafile=str(server.ca_file))
        self._http = httpx.AsyncClient(
            auth=_Bearer(server.token) if server.token is not None else None,
            headers={
                "Accept": FHIR_JSON,
                "Content-Type": f"{FHIR_JSON}; charset=utf-8",
                "Prefer": "return=minimal",
                "User-Agent": f"leukofhir/{__version__}",
            },
            timeout=httpx.Timeout(server.timeout, connect=server.connect_timeout),
            limits=httpx.Limits(
                max_connections=server.connections,
                max_keepalive_connections=server.connections,
            ),
            verify=verify,
            http2=server.http2,
            follow_redirects=False,
            transport=transport,
        )

    async def post(self, body: bytes, entries: int) -> Answer:
        """POST a transaction of ``entries`` request entries; its :class:`Answer`."""
        started = time.perf_counter()
        try:
            response = await self._http.post(self.server.base, content=body)
            content = await response.aread()
        except httpx.TimeoutException as exc:
            self._report(None, started)
            return no_answer(f"no answer: {_kind(exc)}")
        except httpx.RequestError as exc:  # connection, protocol, decoding
            self._report(None, started)
            if _untrusted(exc):
                return Answer(Verdict.STOP, None, "the server's TLS certificate is not trusted")
            return no_answer(f"no answer: {_kind(exc)}")
        self._report(response.status_code, started)
        return read_answer(response.status_code, response.headers, content, entries, self._clock())

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"TransactionClient({self.server.base!r})"

    def _report(self, status: int | None, started: float) -> None:
        if self._observe is not None:
            self._observe(status, time.perf_counter() - started)


class _Bearer(httpx.Auth):
    def __init__(self, token: Token) -> None:
        self._token = token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self._token.reveal()}"
        yield request

    def __repr__(self) -> str:
        return "_Bearer(Token('***'))"


def _kind(exc: httpx.RequestError) -> str:
    """``ConnectError``, ``ReadTimeout`` ... (the exception's own text may carry a URL)."""
    return type(exc).__name__


def _untrusted(exc: BaseException) -> bool:
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return True
        cause = cause.__cause__ or cause.__context__
    return False


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False

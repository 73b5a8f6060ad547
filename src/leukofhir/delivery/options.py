"""Where and how to deliver, from the command line: the ``--fhir-*`` options shared by
``replay``, ``batch``, ``serve`` and ``deliver``, read into one :class:`DeliveryOptions`.

The bearer token comes from ``--fhir-token-file`` or ``LEUKOFHIR_FHIR_TOKEN``, never from
argv (a value on the command line is visible to every user of the machine in ``ps``), and
is kept in a :class:`~leukofhir.delivery.client.Token`, which never shows itself.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from leukofhir.delivery.profiles import PROFILES, ServerProfile
from leukofhir.errors import UsageError

if TYPE_CHECKING:  # httpx loads when a server is built, not when the options are declared
    from leukofhir.delivery.client import FhirServer, Token
    from leukofhir.delivery.policy import RetryPolicy

__all__ = ["DeliveryOptions", "add_delivery_arguments", "delivery_options", "parse_duration"]

_DURATION = r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$"  # compiled on first use: start-up
_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


@dataclass(frozen=True, slots=True)
class DeliveryOptions:
    base: str
    token: Token | None = field(default=None, repr=False)
    ca_file: Path | None = None
    profile: ServerProfile = PROFILES["default"]
    concurrency: int = 4
    retry_for: float = 24 * 3600.0
    timeout: float = 30.0

    def server(self) -> FhirServer:
        from leukofhir.delivery.client import FhirServer

        return FhirServer(
            self.base,
            token=self.token,
            ca_file=self.ca_file,
            timeout=self.timeout,
            connections=self.concurrency,
        )

    def policy(self) -> RetryPolicy:
        from leukofhir.delivery.policy import RetryPolicy

        return RetryPolicy(retry_for=self.retry_for)


def parse_duration(text: str) -> float:
    """``90``, ``90s``, ``15m``, ``24h``, ``2d`` → seconds."""
    match = re.match(_DURATION, text)
    if match is None:
        raise ValueError(f"{text!r} is not a duration (e.g. 90s, 15m, 24h, 2d)")
    return float(match.group(1)) * _UNITS[match.group(2)]


def add_delivery_arguments(parser: argparse.ArgumentParser, *, base: bool = True) -> None:
    """The ``--fhir-*`` options (``base``: with ``--fhir-base`` itself)."""
    group = parser.add_argument_group("delivery to a FHIR server")
    if base:
        group.add_argument(
            "--fhir-base",
            metavar="URL",
            help="deliver every Bundle to this FHIR server (its base URL; a transaction each)",
        )
    group.add_argument(
        "--fhir-token-file",
        type=Path,
        metavar="FILE",
        help="bearer token for the FHIR server (else LEUKOFHIR_FHIR_TOKEN; never on argv)",
    )
    group.add_argument(
        "--fhir-ca", type=Path, metavar="FILE", help="trust this CA bundle (PEM) for TLS"
    )
    group.add_argument(
        "--fhir-server-profile",
        choices=sorted(PROFILES),
        default="default",
        help="the server's transaction limits: default and azure (500 entries), medplum"
        " (8 entries when one is conditional): larger Bundles are sent in parts",
    )
    group.add_argument(
        "--fhir-concurrency",
        type=int,
        default=4,
        metavar="N",
        help="documents in flight (default 4; one patient's always one after the other)",
    )
    group.add_argument(
        "--fhir-retry-for",
        default="24h",
        metavar="DURATION",
        help="keep retrying a document this long, then it is a dead letter (default 24h)",
    )
    group.add_argument(
        "--fhir-timeout",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="wait this long for the server's answer (default 30)",
    )


def delivery_options(
    args: argparse.Namespace, environ: Mapping[str, str], *, base: str | None = None
) -> DeliveryOptions | None:
    """The options read from ``args`` (None without a base URL); a bad value is a usage
    error naming the option (never the token)."""
    base = base if base is not None else getattr(args, "fhir_base", None)
    if not base:
        return None
    if args.fhir_concurrency < 1:
        raise UsageError("--fhir-concurrency must be at least 1")
    if args.fhir_timeout <= 0:
        raise UsageError("--fhir-timeout must be positive")
    try:
        retry_for = parse_duration(args.fhir_retry_for)
    except ValueError as exc:
        raise UsageError(f"--fhir-retry-for: {exc}") from None
    if args.fhir_ca is not None and not args.fhir_ca.is_file():
        raise UsageError(f"--fhir-ca: no such file: {args.fhir_ca}")
    from leukofhir.delivery.client import read_token

    try:
        token = read_token(args.fhir_token_file, environ)
    except ValueError as exc:
        raise UsageError(f"--fhir-token-file: {exc}") from None
    options = DeliveryOptions(
        base=base.rstrip("/"),
        token=token,
        ca_file=args.fhir_ca,
        profile=PROFILES[args.fhir_server_profile],
        concurrency=args.fhir_concurrency,
        retry_for=retry_for,
        timeout=args.fhir_timeout,
    )
    try:
        options.server()  # checks the URL, and that a token goes over https (or loopback)
    except ValueError as exc:
        raise UsageError(f"--fhir-base: {exc}") from None
    return options

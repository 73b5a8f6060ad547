"""``leukofhir serve`` settings, from (first wins) command-line options, environment
variables ``LEUKOFHIR_<NAME>`` and a TOML file (``--config``; keys as below, at the top
level or under ``[serve]``), then the defaults.  Validated by pydantic: a bad value is
refused at start with its name and where it came from."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from leukofhir.context import Settings
from leukofhir.errors import ConfigError, ErrorCode, error
from leukofhir.ingest.dtm import DtmError, zone
from leukofhir.stream.settings import check_url

__all__ = ["ServeConfig", "load_config", "parse_address", "parse_duration"]

ENV_PREFIX = "LEUKOFHIR_"
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class ServeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    out: Path = Path("leukofhir-out")  # journal and (folder sink) outputs
    sink: Literal["folder", "stdout"] = "folder"
    mllp: str = "127.0.0.1:2575"  # HOST:PORT, or "off"
    http: str = "127.0.0.1:8080"  # HOST:PORT, or "off"
    workers: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=0, le=64)
    max_frame: int = Field(1 << 20, ge=1024)
    max_connections: int = Field(64, ge=1)
    idle_timeout: float = Field(600.0, ge=0)
    mllp_release: Literal[1, 2] = 1
    http_max_body: int = Field(1 << 20, ge=1024)
    token: str = ""  # HTTP bearer token (prefer the environment variable LEUKOFHIR_TOKEN)
    fsync: bool = False  # fsync every output file (the journal is always synced)
    journal_sync: Literal["full", "normal"] = "full"
    journal: str = ""  # "": OUT/journal.sqlite; postgresql://...: shared by service hosts
    mappings: tuple[Path, ...] = ()
    timezone: str = "UTC"
    validate_structure: bool = False
    validate_output: bool = False
    profile: Path | None = None  # the deployment profile (README: clinical context)
    notify_critical: bool = False  # a CommunicationRequest once per critical episode
    shutdown_timeout: float = Field(30.0, ge=0)
    journal_retention: float = Field(30 * 86400.0, ge=0, allow_inf_nan=False)  # s; 0: forever
    # delivery to a FHIR server (the token: a file, or LEUKOFHIR_FHIR_TOKEN; never a setting)
    fhir_base: str = ""
    fhir_token_file: Path | None = None
    fhir_ca: Path | None = None
    fhir_server_profile: Literal["default", "azure", "medplum"] = "default"
    fhir_concurrency: int = Field(4, ge=1, le=64)
    fhir_retry_for: float = Field(24 * 3600.0, ge=0, allow_inf_nan=False)
    fhir_timeout: float = Field(30.0, gt=0)
    ack_after: Literal["stored", "delivered"] = "stored"
    ack_timeout: float = Field(30.0, gt=0)
    # live streams: accepted messages go to NATS JetStream, workers settle and write them
    publish: str = ""  # nats://HOST:PORT
    stream: str = Field("LEUKOFHIR", pattern=r"^[A-Za-z0-9_-]+$")
    partitions: int = Field(16, ge=1, le=1024)  # when the stream is created
    publish_timeout: float = Field(5.0, gt=0)

    @field_validator("journal_retention", "fhir_retry_for", mode="before")
    @classmethod
    def _duration(cls, value: object) -> object:
        return parse_duration(value) if isinstance(value, str) else value

    @field_validator("journal")
    @classmethod
    def _journal(cls, value: str) -> str:
        if value and not value.startswith(("postgresql://", "postgres://")):
            raise ValueError("not a postgresql:// URL (empty: the journal is OUT/journal.sqlite)")
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            zone(value)
        except DtmError as exc:
            raise ValueError(str(exc)) from None
        return value

    @field_validator("profile", mode="before")
    @classmethod
    def _no_profile(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value  # PROFILE=

    @field_validator("profile")
    @classmethod
    def _deployment(cls, value: Path | None) -> Path | None:
        """The profile and the files it names read now: a bad one stops the start."""
        if value is not None:
            from leukofhir.rules import load_rule_set
            from leukofhir.rules.deployment import load_deployment

            try:
                load_deployment(value, load_rule_set())
            except ConfigError as exc:
                raise ValueError(exc.issue.message) from None
        return value

    @model_validator(mode="after")
    def _delivered_needs_a_server(self) -> ServeConfig:
        if self.ack_after == "delivered" and not self.fhir_base:
            raise ValueError("ack_after 'delivered' needs fhir_base (a FHIR server)")
        return self

    @field_validator("publish")
    @classmethod
    def _nats(cls, value: str) -> str:
        return check_url(value) if value else value

    @model_validator(mode="after")
    def _published_outputs_are_the_workers(self) -> ServeConfig:
        if self.publish and self.fhir_base:
            raise ValueError("publish: the workers deliver to the FHIR server, not serve")
        return self

    @field_validator("mllp", "http")
    @classmethod
    def _address(cls, value: str) -> str:
        if value != "off":
            parse_address(value)
        return value

    def settings(self) -> Settings:
        """What every service process builds its context from (once, at its start)."""
        return Settings(
            mappings=tuple(str(m) for m in self.mappings),
            timezone=self.timezone,
            validate_structure=self.validate_structure,
            validate_output=self.validate_output,
            profile=str(self.profile or ""),
            notify_critical=self.notify_critical,
        )


def parse_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:2575`` for IPv6) → (host, port); port 0 picks a free one."""
    host, _, port = text.rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{text!r} is not HOST:PORT (e.g. 127.0.0.1:2575), nor 'off'")
    return host, int(port)


def parse_duration(text: str) -> float:
    """``30d``, ``12h``, ``90m``, ``45s`` or a number of seconds → seconds."""
    cleaned = text.strip().lower()
    number, unit = (cleaned[:-1], cleaned[-1]) if cleaned[-1:] in _UNITS else (cleaned, "s")
    try:
        seconds = float(number) * _UNITS[unit]
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds < float("inf"):
        raise ValueError(
            f"{text!r} is not a duration: a number of seconds, or a number followed by s, m,"
            " h or d (30d); 0 keeps messages forever"
        )
    return seconds


def load_config(
    options: Mapping[str, Any],
    *,
    environ: Mapping[str, str] | None = None,
    file: Path | None = None,
) -> ServeConfig:
    """Options given on the command line (None = not given) over the environment over the
    file over the defaults."""
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    if file is not None:
        for key, value in _read_file(file).items():
            values[key], sources[key] = value, str(file)
    environ = os.environ if environ is None else environ
    for name in ServeConfig.model_fields:
        variable = ENV_PREFIX + name.upper()
        if variable in environ:
            raw = environ[variable]
            values[name] = raw.split(os.pathsep) if name == "mappings" else raw
            sources[name] = f"${variable}"
    for key, value in options.items():
        if value is not None:
            values[key], sources[key] = value, f"--{key.replace('_', '-')}"
    try:
        return ServeConfig(**values)
    except ValidationError as exc:
        problems = "; ".join(_problem(e["loc"], e["msg"], sources) for e in exc.errors())
        raise ConfigError(error(ErrorCode.DATA_TYPE, f"bad setting: {problems}")) from None


def _problem(where: tuple[int | str, ...], message: str, sources: Mapping[str, str]) -> str:
    if not where:  # a rule over several settings
        return message
    source = sources.get(str(where[0]), "default")
    return f"{'.'.join(str(p) for p in where)} ({source}): {message}"


def _read_file(path: Path) -> dict[str, Any]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(
            error(ErrorCode.DATA_TYPE, f"cannot read the settings file {path}: {exc}")
        ) from None
    table = data.get("serve", data)
    if not isinstance(table, dict):
        raise ConfigError(error(ErrorCode.DATA_TYPE, f"{path}: [serve] is not a table"))
    return {key.replace("-", "_"): value for key, value in table.items()}

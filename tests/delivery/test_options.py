"""The ``--fhir-*`` options: read into DeliveryOptions, a bad value a usage error that names
the option and never the token."""

from __future__ import annotations

from pathlib import Path

import pytest

from leukofhir.cli import main
from leukofhir.delivery.options import parse_duration
from leukofhir.errors import LeukofhirError
from leukofhir.serve.config import load_config


def test_durations() -> None:
    assert parse_duration("90") == parse_duration("90s") == 90
    assert parse_duration("15m") == 900
    assert parse_duration("24h") == parse_duration("1d") == 86400
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration("soon")


@pytest.mark.parametrize(
    ("options", "says"),
    [
        (["--fhir-base", "ftp://example.org/fhir"], "--fhir-base"),
        (["--fhir-base", "http://127.0.0.1:1/fhir", "--fhir-retry-for", "a while"], "retry"),
        (["--fhir-base", "http://127.0.0.1:1/fhir", "--fhir-concurrency", "0"], "concurrency"),
        (["--fhir-base", "http://127.0.0.1:1/fhir", "--fhir-ca", "/no/such.pem"], "--fhir-ca"),
    ],
)
def test_bad_options_are_usage_errors(
    options: list[str], says: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sample = (
        Path(__file__).resolve().parents[2] / "sample_messages" / "02-leukopenia-g1-wbc-3p0.hl7"
    )
    assert main(["replay", str(sample), *options]) == 2
    assert says in capsys.readouterr().err


def test_a_token_goes_over_https_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LEUKOFHIR_FHIR_TOKEN", "abc.DEF-123")
    source = tmp_path / "in"
    source.mkdir()
    code = main(["batch", str(source), "--out", str(tmp_path / "out"),
                 "--fhir-base", "http://fhir.example.org/r4"])  # fmt: skip
    assert code == 2
    error = capsys.readouterr().err
    assert "https" in error
    assert "abc.DEF-123" not in error


def test_queue_only_needs_a_server(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "in").mkdir()
    assert (
        main(["batch", str(tmp_path / "in"), "--out", str(tmp_path / "o"), "--fhir-queue-only"])
        == 2
    )
    assert "--fhir-base" in capsys.readouterr().err


def test_serve_settings() -> None:
    config = load_config(
        {"fhir_base": "http://127.0.0.1:1/fhir", "fhir_retry_for": "2h"}, environ={}
    )
    assert (config.fhir_retry_for, config.ack_after, config.fhir_concurrency) == (7200, "stored", 4)
    with pytest.raises(LeukofhirError, match="needs fhir_base"):
        load_config({"ack_after": "delivered"}, environ={})
    from_env = load_config({}, environ={"LEUKOFHIR_FHIR_BASE": "https://x.example/fhir"})
    assert from_env.fhir_base == "https://x.example/fhir"

"""The service's pure parts: header reading, content hashing, acknowledgement choices,
replies, the journal, the configuration."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from leukofhir.cli import main
from leukofhir.errors import ConfigError, ErrorCode, warning
from leukofhir.serve.config import load_config, parse_address
from leukofhir.serve.header import NO_HEADER, content_hash, msh_of, read_header
from leukofhir.serve.journal import Arrival, Completion, Journal
from leukofhir.serve.reply import MAX_ERR, application_ack, fhir_reply
from leukofhir.serve.work import Result
from tests.serve.helpers import field_of, sample

M02 = sample("02-leukopenia-g1-wbc-3p0.hl7")
MOMENT = datetime(2026, 3, 14, 9, 30, 15, tzinfo=UTC)


def test_header_from_the_msh_alone() -> None:
    header = read_header(b"\xef\xbb\xbf" + M02)
    assert header.sender == "LABSYS|LAKESHORE CH"
    assert header.control_id == "LCH000418822"
    assert header.facility == "LAKESHORE CH"
    assert not header.enhanced
    assert header.refusal is None
    assert msh_of(b"\x0b\r\nMSH|^~\\&|A\rPID|1") == b"\x0b\r\nMSH|^~\\&|A"


def test_no_msh_gives_an_empty_header_not_an_exception() -> None:
    assert read_header(b"PID|1||x\r") == NO_HEADER
    assert read_header(b"\x00\xff garbage") == NO_HEADER


@pytest.mark.parametrize(
    ("msh", "code"),
    [
        (b"MSH|^~\\&|A|B|C|D|20260101||ADT^A01|1|P|2.5.1", ErrorCode.UNSUPPORTED_MESSAGE_TYPE),
        (b"MSH|^~\\&|A|B|C|D|20260101||ORU^R01|1|P|2.2", ErrorCode.UNSUPPORTED_VERSION),
        (b"MSH|^~\\&|A|B|C|D|20260101||ORU^R01|1|X|2.5.1", ErrorCode.UNSUPPORTED_PROCESSING_ID),
    ],
)
def test_refusals_found_in_the_header(msh: bytes, code: ErrorCode) -> None:
    refusal = read_header(msh).refusal
    assert refusal is not None
    assert refusal.code is code


@pytest.mark.parametrize(
    ("accept", "application", "commit_sent", "application_sent"),
    [
        # (MSH-15, MSH-16) → is the CA sent? is the AA sent?  and for errors (CE, AE)
        ("AL", "AL", (True, True), (True, True)),
        ("NE", "NE", (False, False), (False, False)),
        ("ER", "ER", (False, True), (False, True)),
        ("SU", "SU", (True, False), (True, False)),
        ("", "AL", (True, True), (True, True)),  # a missing MSH-15 counts as AL
    ],
)
def test_enhanced_mode_table(
    accept: str,
    application: str,
    commit_sent: tuple[bool, bool],
    application_sent: tuple[bool, bool],
) -> None:
    msh = f"MSH|^~\\&|A|B|C|D|20260101||ORU^R01|1|P|2.5.1|||{accept}|{application}".encode()
    header = read_header(msh)
    assert header.enhanced
    assert (header.wants_accept_ack("CA"), header.wants_accept_ack("CE")) == commit_sent
    assert (
        header.wants_application_ack("AA"),
        header.wants_application_ack("AE"),
    ) == application_sent


def test_content_hash_ignores_how_segments_end() -> None:
    base = content_hash(M02)
    assert content_hash(M02.replace(b"\r", b"\r\n")) == base
    assert content_hash(M02.replace(b"\r", b"\n")) == base
    assert content_hash(M02.rstrip(b"\r")) == base
    assert content_hash(M02.replace(b"|3.0|", b"|3.1|")) != base


def result(ack: str, issues: int = 0, disposition: str = "processed") -> Result:
    found = tuple(
        warning(ErrorCode.DATA_TYPE, f"issue {n}", fhir_type="value") for n in range(issues)
    )
    return Result(disposition, ack, "X1", found, ((".r1.bundle.json", b"{}\n"),), 1, ())


def test_the_ack_is_capped_so_single_read_clients_get_it_whole() -> None:
    code, ack = application_ack(M02, [result("AA", 40)], control_id="LF9", moment=MOMENT)
    assert code == "AA"
    errs = [line for line in ack.split(b"\r") if line.startswith(b"ERR")]
    assert len(errs) == MAX_ERR
    assert b"29 more issues" in errs[-1]
    assert len(ack) < 4096
    assert field_of(ack, "MSH", 7) == "20260314093015+0000"
    assert field_of(ack, "MSH", 10) == "LF9"


def test_the_worst_code_wins() -> None:
    code, _ = application_ack(
        M02, [result("AA"), result("AR", disposition="rejected"), result("AE")],
        control_id="LF1", moment=MOMENT,
    )  # fmt: skip
    assert code == "AR"


def test_fhir_reply_statuses() -> None:
    assert fhir_reply([result("AA")], seed="s") == (200, b"{}\n")
    status, body = fhir_reply([result("AA"), result("AA")], seed="s")
    assert status == 200
    assert b'"type":"collection"' in body
    rejected = Result("rejected", "AE", "", (warning(ErrorCode.DATA_TYPE, "bad"),), (), 0, ())
    status, body = fhir_reply([rejected], seed="s")
    assert status == 422
    assert b'"resourceType":"OperationOutcome"' in body


def arrival(data: bytes, control_id: str = "C1") -> Arrival:
    return Arrival("A|B", control_id, content_hash(data), "hl7v2", "mllp", data)


def test_journal_receive_duplicate_reuse_complete_pending(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    first, again, other = journal.receive(
        [arrival(b"MSH|1"), arrival(b"MSH|1\r"), arrival(b"MSH|2")], "2026-01-01T00:00:00+00:00"
    )
    assert first.new
    assert not first.reused_id
    assert (again.new, again.finished, again.id) == (False, False, first.id)  # same content
    assert other.new
    assert other.reused_id  # same MSH-10, other content
    assert [p.id for p in journal.pending()] == [first.id, other.id]
    journal.complete(
        [Completion(first.id, "processed", "AA", b"ACK", 1, ("x G1",), ("a",))],
        "2026-01-01T00:00:01+00:00",
    )
    [later] = journal.receive([arrival(b"MSH|1")], "2026-01-02T00:00:00+00:00")
    assert (later.finished, later.reply, later.ack, later.received) == (
        True,
        b"ACK",
        "AA",
        "2026-01-01T00:00:00+00:00",
    )
    assert journal.counts() == {"processed": 1, "received": 1}
    assert journal.data(other.id) == b"MSH|2"
    journal.close()
    reopened = Journal(tmp_path)  # survives a restart
    assert [p.id for p in reopened.pending()] == [other.id]
    reopened.close()


def test_config_precedence_and_errors(tmp_path: Path) -> None:
    file = tmp_path / "leukofhir.toml"
    file.write_text('[serve]\nworkers = 3\nmllp = "127.0.0.1:3000"\ntoken = "from-file"\n')
    environ = {"LEUKOFHIR_TOKEN": "from-env", "LEUKOFHIR_WORKERS": "5"}
    config = load_config({"workers": 1, "http": None}, environ=environ, file=file)
    assert config.workers == 1  # option over environment over file
    assert config.token == "from-env"
    assert config.mllp == "127.0.0.1:3000"
    assert config.http == "127.0.0.1:8080"  # default: localhost
    with pytest.raises(ConfigError, match=r"mllp \(\$LEUKOFHIR_MLLP\)"):
        load_config({}, environ={"LEUKOFHIR_MLLP": "everywhere"})
    bad = tmp_path / "bad.toml"
    bad.write_text("unknown_key = 1\n")
    with pytest.raises(ConfigError, match="unknown_key"):
        load_config({}, environ={}, file=bad)
    assert parse_address("[::1]:2575") == ("::1", 2575)


def test_journal_retention_is_a_duration_from_option_environment_or_file(
    tmp_path: Path,
) -> None:
    assert load_config({}, environ={}).journal_retention == 30 * 86400  # the default
    assert load_config({"journal_retention": "12h"}, environ={}).journal_retention == 43200
    environ = {"LEUKOFHIR_JOURNAL_RETENTION": "7d"}
    assert load_config({}, environ=environ).journal_retention == 7 * 86400
    file = tmp_path / "leukofhir.toml"
    file.write_text("[serve]\njournal-retention = 0\n")  # 0: keep forever
    assert load_config({}, environ={}, file=file).journal_retention == 0
    file.write_text('journal_retention = "90m"\n')
    assert load_config({}, environ={}, file=file).journal_retention == 5400
    for bad in ("30 days", "-1d", "inf", "d", ""):
        with pytest.raises(ConfigError, match=r"journal_retention \(--journal-retention\)"):
            load_config({"journal_retention": bad}, environ={})


def test_profile_and_notify_critical_from_option_environment_or_file(tmp_path: Path) -> None:
    profile = tmp_path / "site.toml"
    profile.write_text('name = "riverbend"\nversion = "2025.1"\n', encoding="utf-8")
    default = load_config({}, environ={})
    assert (default.profile, default.notify_critical) == (None, False)
    assert default.settings().profile == ""
    environ = {"LEUKOFHIR_PROFILE": str(profile), "LEUKOFHIR_NOTIFY_CRITICAL": "1"}
    settings = load_config({}, environ=environ).settings()
    assert (settings.profile, settings.notify_critical) == (str(profile), True)
    assert load_config({}, environ={"LEUKOFHIR_PROFILE": ""}).profile is None  # unset
    file = tmp_path / "leukofhir.toml"
    file.write_text(f"[serve]\nprofile = '{profile}'\nnotify-critical = true\n")
    config = load_config({}, environ={}, file=file)
    assert (config.profile, config.notify_critical) == (profile, True)
    with pytest.raises(ConfigError, match=r"profile \(\$LEUKOFHIR_PROFILE\): .*cannot be read"):
        load_config({}, environ={"LEUKOFHIR_PROFILE": str(tmp_path / "none.toml")})


@pytest.mark.parametrize(
    "options",
    [
        ["--timezone", "Mars/Olympus"],
        ["--profile", "/nonexistent/site.toml"],
        ["--mapping", "/nonexistent/mapping.csv"],
        ["--mllp", "everywhere"],
        ["--workers", "-1"],
        ["--journal-retention", "forever"],
    ],
)
def test_serve_refuses_bad_settings_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], options: list[str]
) -> None:
    code = main(["serve", "--out", str(tmp_path), *options])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("leukofhir: ")
    assert "Traceback" not in err

"""``leukofhir replay`` end to end: formats, exit codes, --out, and logs without patient data."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from leukofhir.cli import COMMANDS, _command, _parser, main
from tests.conftest import ROOT, SAMPLES

NORMAL = SAMPLES / "01-normal-cbc-5-part-diff.hl7"
GOOD_BAD_GOOD = SAMPLES / "20-good-bad-good.hl7"
NOW = ["--now", "2026-01-01T00:00:00Z"]


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["--log-format", "json", "replay", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_ndjson_is_the_default_when_piped(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, str(NORMAL), *NOW)
    assert code == 0
    documents = [json.loads(line) for line in out.splitlines()]
    assert documents[0]["resourceType"] == "Bundle"
    assert documents[0]["type"] == "transaction"


def test_a_rejected_message_gives_exit_1_and_the_others_are_processed(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run(capsys, str(GOOD_BAD_GOOD), *NOW)
    assert code == 1
    kinds = [json.loads(line)["resourceType"] for line in out.splitlines()]
    assert kinds.count("Bundle") == 2
    errors = [json.loads(line) for line in out.splitlines() if '"severity":"error"' in line]
    assert errors[0]["issue"][0]["location"] == ["MSH[1]-9"]


@pytest.mark.parametrize(
    "args",
    [
        ["does-not-exist.hl7"],
        [str(NORMAL), "--format", "xml"],
        [str(NORMAL), "--now", "soon"],
        [str(NORMAL), "--timezone", "Mars/Olympus"],
        [str(NORMAL), "--mapping", "nope.csv"],
    ],
)
def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str], args: list[str]) -> None:
    try:
        code = main(["replay", *args])
    except SystemExit as exc:  # argparse's own usage errors
        code = int(exc.code or 0)
    assert code == 2
    assert "Traceback" not in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "command"),
    [
        (["replay", "x.hl7"], "replay"),
        (["--log-format", "json", "batch", "IN"], "batch"),
        (["--log-format=json", "serve"], "serve"),
        (["--log", "console", "worker"], "worker"),
        (["--", "deliver"], "deliver"),
        (["--log-format", "replay", "journal"], "journal"),  # the value is not the command
        (["--help"], None),
        (["-h", "replay"], None),  # the help lists every command
        (["--he", "replay"], None),
        ([], None),
    ],
)
def test_the_command_is_found_as_argparse_finds_it(argv: list[str], command: str | None) -> None:
    assert _command(argv) == command


def test_one_commands_parser_parses_as_the_whole_parser() -> None:
    """Only the running command's sub-parser is built; it must parse its arguments as the
    parser with every sub-parser does."""
    for name in COMMANDS:
        argv = [name, "--help"]
        with pytest.raises(SystemExit):
            _parser(name).parse_args(argv)  # each command's parser builds alone
    argv = ["replay", str(NORMAL), "--format", "json", "--state", "s.db", *NOW]
    assert vars(_parser("replay").parse_args(argv)) == vars(_parser().parse_args(argv))


def test_json_format_is_one_indented_array(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, str(NORMAL), "--format", "json", *NOW)
    assert code == 0
    assert isinstance(json.loads(out), list)
    assert out.startswith("[\n  {")


def test_summary_format_names_findings(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys, str(SAMPLES / "05-leukopenia-g4-agranulocytosis.hl7"), "--format", "summary"
    )
    assert code == 0
    assert "Leukopenia, CTCAE grade 4" in out
    assert "high priority" in out


def test_out_writes_one_file_per_result(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, _ = run(capsys, str(GOOD_BAD_GOOD), "--out", str(tmp_path), *NOW)
    assert code == 1
    assert out == ""
    names = sorted(p.name for p in tmp_path.iterdir())
    assert "20-good-bad-good.hl7.m0001.r1.bundle.json" in names
    assert "20-good-bad-good.hl7.m0002.outcome.json" in names


def test_a_folder_is_read_recursively_without_dotfiles_and_readmes(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.hl7").write_bytes(NORMAL.read_bytes())
    (tmp_path / ".hidden.hl7").write_bytes(b"garbage")
    (tmp_path / "README.md").write_text("# notes about these messages\n")
    code, out, _ = run(capsys, str(tmp_path), *NOW)
    assert code == 0  # neither the dotfile nor the README was read as a message
    assert len(out.splitlines()) >= 1


def test_logs_carry_no_patient_data(capsys: pytest.CaptureFixture[str]) -> None:
    """Every name, identifier and value of the sample patients stays out of the logs."""
    text = b"".join(p.read_bytes() for p in sorted(SAMPLES.glob("*.hl7")))
    pid_fields = set()
    for line in text.replace(b"\n", b"\r").split(b"\r"):
        if line.startswith(b"PID|"):
            fields = line.decode("utf-8", "replace").split("|")
            for index in (3, 5, 7, 11, 13, 19):
                if index < len(fields):
                    pid_fields.update(
                        part
                        for part in fields[index].replace("~", "^").split("^")
                        if len(part) >= 4
                    )
    assert pid_fields
    code, _, err = run(capsys, str(SAMPLES), *NOW)
    assert code == 1
    for line in err.splitlines():
        json.loads(line)  # structured
    words = set(re.split(r"[^A-Za-z0-9]+", err))
    leaked = sorted(value for value in pid_fields if value in words)
    assert not leaked
    assert '"outcome":"rejected"' in err


def test_a_mapping_file_brings_local_codes_in(capsys: pytest.CaptureFixture[str]) -> None:
    sample = str(SAMPLES / "35-local-codes-only.hl7")
    mapping = str(ROOT / "mappings" / "meridian-local-codes.csv")
    code, out, _ = run(capsys, sample, *NOW)
    assert code == 0
    assert "--mapping can map them" in out
    assert '"resourceType":"Bundle"' not in out
    code, out, _ = run(capsys, "--mapping", mapping, sample, *NOW)
    assert code == 0
    bundle = json.loads(out.splitlines()[0])
    flags = [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Flag"]
    assert sorted(f["code"]["coding"][0]["code"] for f in flags) == ["165517008", "84828003"]


def test_fhir_input_is_detected_and_can_be_forced(capsys: pytest.CaptureFixture[str]) -> None:
    sample = str(SAMPLES / "f01-single-observation-wbc-leukopenic.json")
    code, out, _ = run(capsys, sample, *NOW)
    assert code == 0
    assert json.loads(out.splitlines()[0])["resourceType"] == "Bundle"
    code, out, _ = run(capsys, sample, "--format-in", "hl7v2", *NOW)
    assert code == 1  # read as HL7 v2 it is no message: rejected, with the reason
    assert "MSH" in out

"""A fault in the core rejects the message it hit (code 207), never a worker or the batch:
the other messages of the file and the other files go on."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from leukofhir.batch import BatchOptions, run_batch
from leukofhir.batch import settle as settle_module
from leukofhir.batch import work as work_module
from leukofhir.logs import get_logger
from leukofhir.pipeline import MessageOutcome
from tests.batch.helpers import NOW as NOW_TEXT
from tests.batch.helpers import (
    age,
    batch_argv,
    batch_env,
    generate_messages,
    ledger_rows,
    make_inputs,
)
from tests.conftest import NOW, ROOT

LOG = get_logger("test.batch")
SAMPLES = ROOT / "sample_messages"
POISON_MARK = b"|POISON-"  # in a generated message's MSH-10


def _options(tmp_path: Path, **changes: Any) -> BatchOptions:
    options = BatchOptions(
        source=tmp_path / "in", out=tmp_path / "out", workers=1, min_age=0, now=NOW, progress=False
    )
    return replace(options, **changes)


def _rows(out: Path) -> dict[tuple[str, int], tuple[str, str, list[str]]]:
    return {
        (str(r[0]), int(str(r[2]))): (str(r[5]), str(r[8]), json.loads(str(r[9])))
        for r in ledger_rows(out)
    }


def _poisoned(message: bytes) -> bytes:
    """``message`` with MSH-10 starting with POISON- (the fault below looks for it)."""
    fields = message.split(b"\r", 1)[0].split(b"|")
    head = b"|".join([*fields[:9], b"POISON-" + fields[9], *fields[10:]])
    return head + message[len(message.split(b"\r", 1)[0]) :]


def _three_with_poison_in_the_middle(source: Path) -> bytes:
    source.mkdir(parents=True, exist_ok=True)
    a, b, c = generate_messages(3, 21)
    bad = _poisoned(b)
    (source / "f.hl7").write_bytes(a + bad + c)
    age(source / "f.hl7")
    make_inputs(source / "other", 3, per_file=1, seed=22)
    return bad


def test_an_exception_escaping_the_core_rejects_that_message_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = _three_with_poison_in_the_middle(tmp_path / "in")
    real = work_module.process_message

    def faulty(raw: Any, context: Any) -> MessageOutcome:
        if POISON_MARK in raw.data:
            raise KeyError("R4.FooType: patient Jane Doe")  # text never to be logged
        return real(raw, context)

    monkeypatch.setattr(work_module, "process_message", faulty)
    result = run_batch(_options(tmp_path), LOG)
    assert result.error == ""
    assert result.exit_code == 1
    assert result.summary["messages"] == {"total": 6, "processed": 5, "skipped": 0, "rejected": 1}
    rows = _rows(tmp_path / "out")
    assert [rows["f.hl7", i][0] for i in range(3)] == ["processed", "rejected", "processed"]
    _, reason, outputs = rows["f.hl7", 1]
    assert "leukofhir failed on this message (KeyError)" in reason
    assert "Jane" not in reason
    kept, document = (tmp_path / "out" / outputs[0]), (tmp_path / "out" / outputs[1])
    assert kept.read_bytes() == bad.rstrip(b"\r")  # the message as framed, byte for byte
    (issue,) = json.loads(document.read_bytes())["issue"]
    assert issue["code"] == "exception"
    assert issue["details"]["coding"][0]["code"] == "207"


def test_a_fault_is_logged_with_its_type_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _three_with_poison_in_the_middle(tmp_path / "in")
    real = work_module.process_message

    def faulty(raw: Any, context: Any) -> MessageOutcome:
        if POISON_MARK in raw.data:
            raise ValueError("Jane Doe 1970-01-01")
        return real(raw, context)

    monkeypatch.setattr(work_module, "process_message", faulty)
    run_batch(_options(tmp_path), LOG)
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    (fault,) = [line for line in lines if "code 207" in line["event"]]
    assert (fault["file"], fault["message"], fault["error"]) == ("f.hl7", 2, "ValueError")
    assert not any("Jane" in json.dumps(line) for line in lines)


def test_a_fault_while_rendering_rejects_the_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The outcome is fine but writing its Bundle raises (an output the writer refuses;
    Bundles are written by the parent, once settled against the patients' history)."""
    _three_with_poison_in_the_middle(tmp_path / "in")
    real = settle_module.finish_bytes

    def finish_bytes(draft: Any, writes: Any, rule_set: Any) -> bytes | None:
        written = real(draft, writes, rule_set)
        if written is not None and b"POISON-" in written:
            raise TypeError("Integer exceeds 64-bit range")
        return written

    monkeypatch.setattr(settle_module, "finish_bytes", finish_bytes)
    result = run_batch(_options(tmp_path), LOG)
    assert result.summary["messages"] == {"total": 6, "processed": 5, "skipped": 0, "rejected": 1}
    outcome, reason, outputs = _rows(tmp_path / "out")["f.hl7", 1]
    assert outcome == "rejected"
    assert "(TypeError)" in reason
    assert all((tmp_path / "out" / o).is_file() for o in outputs)
    assert not list((tmp_path / "out" / "processed").rglob("POISON*"))  # no half-written Bundle


def _failing_reader(after: int) -> Any:
    """A stand-in for ``work.process`` whose reader gives ``after`` outcomes and raises."""
    real = work_module.process

    def process(data: bytes, context: Any, **kwargs: Any) -> Iterator[MessageOutcome]:
        outcomes = real(data, context, **kwargs)
        for n, outcome in enumerate(outcomes):
            if n == after:
                raise RecursionError("maximum recursion depth exceeded")
            yield outcome

    return process


def test_a_reader_failing_part_way_rejects_the_rest_of_the_file_as_one_unit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "in"
    source.mkdir()
    ndjson = (SAMPLES / "f07-bulk-export.ndjson").read_bytes()
    (source / "bulk.ndjson").write_bytes(ndjson)
    age(source / "bulk.ndjson")
    make_inputs(source / "other", 2, per_file=1)
    monkeypatch.setattr(work_module, "process", _failing_reader(after=1))
    result = run_batch(_options(tmp_path), LOG)
    assert result.error == ""
    rows = {k: v for k, v in _rows(tmp_path / "out").items() if k[0] == "bulk.ndjson"}
    assert [v[0] for _, v in sorted(rows.items())] == ["processed", "rejected"]
    _, reason, outputs = rows["bulk.ndjson", 1]
    assert "failed while reading this input (RecursionError) after 1 message(s)" in reason
    assert "rejected as one unit" in reason
    assert (tmp_path / "out" / outputs[0]).read_bytes() == ndjson  # the input, whole
    assert result.summary["messages"]["processed"] == 3  # the other files too


def test_the_real_poison_input_never_stops_the_batch(tmp_path: Path) -> None:
    """An Observation with a contained resource of an unknown type made the FHIR reader
    raise KeyError (issue 9): with the guard it is rejected, the rest goes on, whether or
    not the core itself copes with it."""
    source = tmp_path / "in"
    source.mkdir()
    observation = json.loads((SAMPLES / "f01-single-observation-wbc-leukopenic.json").read_bytes())
    poisoned = {**observation, "contained": [{"resourceType": "Foo"}]}
    (source / "poison.json").write_text(json.dumps(poisoned))
    lines = (SAMPLES / "f07-bulk-export.ndjson").read_bytes().splitlines(keepends=True)
    (source / "mixed.ndjson").write_bytes(
        lines[0] + json.dumps(poisoned).encode() + b"\n" + b"".join(lines[1:])
    )
    for n, name in enumerate(("poison.json", "mixed.ndjson")):
        age(source / name, n)
    make_inputs(source / "hl7", 3, per_file=1)
    result = run_batch(_options(tmp_path, workers=2, files_per_task=1), LOG)
    assert result.error == ""
    rows = _rows(tmp_path / "out")
    # what the poison becomes is the core's to say (rejected by this guard, or by the core
    # once it copes): here only that it has its outcome and nothing else was lost
    assert ("poison.json", 0) in rows
    assert any(source == "mixed.ndjson" for source, _ in rows)
    assert all(rows[f"hl7/gen-7-00000{n}.hl7", 0][0] == "processed" for n in range(3))
    for _, _, outputs in rows.values():
        assert all((tmp_path / "out" / name).is_file() for name in outputs)


_DRIVER = """
import sys
import leukofhir.batch.work as work
from leukofhir.cli import main
real = work.process_message
def faulty(raw, context):
    if b"|POISON-" in raw.data:
        raise KeyError("R4.FooType")
    return real(raw, context)
work.process_message = faulty  # the forked workers inherit it
sys.exit(main(sys.argv[1:]))
"""


def test_a_fault_in_a_forked_worker_of_a_real_batch(tmp_path: Path) -> None:
    _three_with_poison_in_the_middle(tmp_path / "in")
    argv = batch_argv(tmp_path / "in", tmp_path / "out", "--workers", "2", "--now", NOW_TEXT)
    completed = subprocess.run(
        [sys.executable, "-c", _DRIVER, *argv[3:]],  # argv[:3]: python -m leukofhir.cli
        env=batch_env(),
        capture_output=True,
        timeout=120,
        check=False,
    )
    stderr = completed.stderr.decode()
    assert completed.returncode == 1, stderr[-2000:]
    assert "Traceback" not in stderr
    assert "code 207" in stderr
    summary = json.loads((tmp_path / "out" / "summary.json").read_bytes())
    assert summary["messages"] == {"total": 6, "processed": 5, "skipped": 0, "rejected": 1}
    assert summary["this_run"]["stopped"] == ""

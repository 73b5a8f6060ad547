"""Instructions (valgrind's callgrind), which a busy machine does not change as it changes times.

    python benchmarks/instructions_core.py             # needs valgrind (apt-get install valgrind)
    python benchmarks/instructions_core.py --low 50 --high 300

Prints, each counted once (they are deterministic: the hash seed is fixed):

  per message   the in-process pipeline of benchmarks/bench.py (process() → documents →
                JSON bytes over generated 19-OBX messages): the instructions of a run over
                ``--high`` messages less those of one over ``--low``, divided by the difference
  start-up      ``leukofhir --version``, ``leukofhir replay`` of one generated message
                (byte code written first, as in an installed package), and ``python -c pass``

To compare with another checkout, put its ``src`` first: ``PYTHONPATH=/other/src python ...``.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
LEUKOFHIR = "import sys; from leukofhir.cli import main; sys.exit(main())"
# byte code written and used as in an installed package; one hash seed for every run
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
ENV["PYTHONHASHSEED"] = "0"


def instructions(command: list[str]) -> int:
    """The instructions callgrind counts for ``command`` (its output is discarded: a
    replay's NDJSON and JSON logs go to pipes, as to files)."""
    with tempfile.TemporaryDirectory(prefix="leukofhir-callgrind-") as temp:
        done = subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                f"--callgrind-out-file={temp}/out",
                *command,
            ],
            capture_output=True,
            text=True,
            env=ENV,
            check=False,
        )
    found = re.search(r"Collected : (\d+)", done.stderr)
    if found is None:
        raise SystemExit(f"callgrind counted nothing for {command[:3]}:\n{done.stderr[-2000:]}")
    return int(found.group(1))


def pipeline(count: int) -> None:
    """The inner run: set-up and one warm message, then ``count`` messages as bench.py."""
    sys.path.insert(0, str(HERE))
    from datetime import UTC, datetime

    from leukofhir.context import Context
    from leukofhir.emit.jsonio import dumps
    from leukofhir.pipeline import process
    from leukofhir.rules import load_rule_set
    from leukofhir.terminology import load_terminology

    from generate import generate_messages

    messages = generate_messages(max(count, 1), 1)
    context = Context(
        now=datetime(2026, 1, 1, tzinfo=UTC),
        terminology=load_terminology(),
        rule_set=load_rule_set(),
    )
    for data in (messages[0], b"".join(messages[:count])):  # warm caches, then the count
        for outcome in process(data, context):
            for document in outcome.documents():
                dumps(document)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--low", type=int, default=50, help="messages of the smaller run")
    parser.add_argument("--high", type=int, default=300, help="messages of the larger run")
    parser.add_argument("--inner", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inner is not None:
        pipeline(args.inner)
        return 0

    python = [sys.executable, str(Path(__file__).resolve())]
    # byte code written first: a module compiled inside one of the two counted runs only
    # (freshly edited code) would be counted in that run alone
    subprocess.run([*python, "--inner", "1"], capture_output=True, env=ENV, check=True)
    low = instructions([*python, "--inner", str(args.low)])
    high = instructions([*python, "--inner", str(args.high)])
    print(f"per message   pipeline: {(high - low) / (args.high - args.low) / 1e6:.2f} M")

    sys.path.insert(0, str(HERE))
    from generate import generate_messages

    with tempfile.TemporaryDirectory(prefix="leukofhir-instructions-") as temp:
        one = Path(temp) / "cbc-00001.hl7"
        one.write_bytes(generate_messages(1, 1)[0])
        commands = {
            "leukofhir --version": [sys.executable, "-c", LEUKOFHIR, "--version"],
            "leukofhir replay (1 message)": [sys.executable, "-c", LEUKOFHIR, "replay", str(one)],
            "python -c pass": [sys.executable, "-c", "pass"],
        }
        for name, command in commands.items():
            subprocess.run(command, capture_output=True, env=ENV, check=False)  # byte code
            print(f"start-up      {name:<30} {instructions(command) / 1e6:5.0f} M")
    return 0


if __name__ == "__main__":
    sys.exit(main())

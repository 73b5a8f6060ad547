"""Whole-process comparison: ``leukofhir replay`` against two converters, on the same files.

    python benchmarks/compare.py                       # 1,000 files, 5 runs (models: 1)
    python benchmarks/compare.py --count 200 --runs 3 --models-runs 0   # skip the slow one

Generates ``--count`` CBC messages (benchmarks/generate.py, 19 OBX each), one file each, in
a temporary folder, then times each command as a subprocess, stdout to a file in the same
folder (start-up, reading, parsing, writing: everything), and prints messages per second
(the median of the runs), the peak resident memory and the ratios:

  leukofhir   ``leukofhir replay DIR > out.ndjson`` (rules, Flags, lifecycle, Provenance)
  python-hl7  ``benchmarks/hl7_converter.py DIR > out.ndjson`` (python-hl7 + dicts + orjson,
              no rules, no Flags)
  models      ``benchmarks/baseline.py DIR > out.ndjson`` (hl7apy + fhir.resources models
              + ``model_dump_json``)

The runs are interleaved (a burst of load elsewhere hits all commands alike), and the
machine, its load average and the other processes' CPU time during the runs are printed
with the table: on a shared machine, read the ratios rather than the absolute numbers.
Also ``leukofhir --version`` and a replay of one message (start-up), medians of
``--start-runs`` runs.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from generate import generate_messages

HERE = Path(__file__).resolve().parent
PYTHON = sys.executable
LEUKOFHIR = [PYTHON, "-c", "import sys; from leukofhir.cli import main; sys.exit(main())"]


def commands(folder: Path) -> dict[str, list[str]]:
    return {
        "leukofhir": [*LEUKOFHIR, "replay", str(folder), "--now", "2026-01-01T00:00:00Z"],
        "python-hl7": [PYTHON, str(HERE / "hl7_converter.py"), str(folder)],
        "models": [PYTHON, str(HERE / "baseline.py"), str(folder)],
    }


# byte code is written and used as in an installed package (a shell may say otherwise)
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def run(command: list[str], out: Path) -> tuple[float, int]:
    """Wall seconds and peak resident memory (KiB) of one run, stdout to ``out``."""
    with out.open("wb") as sink:
        start = time.perf_counter()
        child = subprocess.Popen(command, stdout=sink, stderr=subprocess.DEVNULL, env=ENV)
        _, status, usage = os.wait4(child.pid, 0)
        seconds = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode not in (0, 1):
        raise SystemExit(f"{command[1:3]} exited {child.returncode}")
    return seconds, usage.ru_maxrss


def busy_seconds() -> float:
    """CPU seconds the whole machine has spent (all cores, /proc/stat), not idle."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=1000, help="files, one message each")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--runs", type=int, default=5, help="runs of leukofhir and python-hl7")
    parser.add_argument("--models-runs", type=int, default=1, help="runs of the models (slow)")
    parser.add_argument("--start-runs", type=int, default=11, help="runs of the start-up")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="leukofhir-compare-") as temp:
        folder = Path(temp) / "in"
        folder.mkdir()
        for number, message in enumerate(generate_messages(args.count, args.seed), 1):
            (folder / f"cbc-{number:05d}.hl7").write_bytes(message)
        one = folder / "cbc-00001.hl7"
        print(
            f"machine: {platform.machine()}, {os.cpu_count()} cores, Python"
            f" {platform.python_version()}, {platform.system()} {platform.release()};"
            f" load average before: {os.getloadavg()[0]:.2f}"
        )
        print(f"input: {args.count} generated CBC ORU^R01 files (19 OBX, one message each)")

        start_cmds = {
            "leukofhir --version": [*LEUKOFHIR, "--version"],
            "leukofhir replay (1 message)": [*LEUKOFHIR, "replay", str(one)],
            "python -c pass": [PYTHON, "-c", "pass"],
        }
        for command in start_cmds.values():  # writes the byte code, reads the files once
            run(command, Path(temp) / "start.out")
        run(commands(folder)["python-hl7"], Path(temp) / "warm.out")
        start_times: dict[str, list[float]] = {name: [] for name in start_cmds}
        for _ in range(args.start_runs):
            for name, command in start_cmds.items():
                start_times[name].append(run(command, Path(temp) / "start.out")[0])
        for name, times in start_times.items():
            print(f"start-up  {name:<30} median {statistics.median(times) * 1000:6.0f} ms")

        cmds = commands(folder)
        times: dict[str, list[float]] = {name: [] for name in cmds}
        memory: dict[str, int] = dict.fromkeys(cmds, 0)
        busy_before, clock_before = busy_seconds(), time.perf_counter()
        own = 0.0
        for round_ in range(max(args.runs, args.models_runs)):
            for name, command in cmds.items():
                if round_ >= (args.models_runs if name == "models" else args.runs):
                    continue
                seconds, rss = run(command, Path(temp) / f"{name}.ndjson")
                times[name].append(seconds)
                own += seconds
                memory[name] = max(memory[name], rss)
        elapsed = time.perf_counter() - clock_before
        others = max(0.0, busy_seconds() - busy_before - own)
        print(
            f"others' CPU during the runs: {others / elapsed:.2f} cores on average"
            f" (load average after: {os.getloadavg()[0]:.2f})"
        )
        rates: dict[str, float] = {}
        print(f"{'command':<11} {'runs':>4} {'median s':>9} {'msg/s':>8} {'peak RSS':>9}")
        for name, values in times.items():
            if not values:
                continue
            median = statistics.median(values)
            rates[name] = args.count / median
            print(
                f"{name:<11} {len(values):>4} {median:>9.2f} {rates[name]:>8.0f}"
                f" {memory[name] / 1024:>7.0f} MB"
            )
        for name, rate in rates.items():
            if name != "leukofhir":
                print(f"leukofhir / {name}: {rates['leukofhir'] / rate:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Throughput and memory of ``leukofhir batch`` with 1 and 2 workers on generated CBC messages.

    python benchmarks/batch_bench.py                    # 100,000 messages (takes minutes)
    python benchmarks/batch_bench.py --count 10000 --layouts 1,100 --workers 1,2

For each layout (messages per file) the messages are written once to a temporary folder,
then ``leukofhir batch IN --out OUT --now ... --workers N`` runs as a subprocess into a
fresh OUT.  Reported per run: wall time (start-up, scan, processing, writing, ledger,
summary: everything), messages per second, and the peak resident memory of the batch
process and its workers together (sampled from /proc every 0.1 s).  ``--workers 1``
runs without a pool (the parent does the work); ``--workers 2`` forks two workers.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from generate import generate_messages

ROOT = Path(__file__).resolve().parents[1]


def write_inputs(folder: Path, messages: list[bytes], per_file: int) -> int:
    folder.mkdir(parents=True)
    files = 0
    for start in range(0, len(messages), per_file):
        sub = folder / f"d{files // 10_000:03d}"  # a real archive has folders
        sub.mkdir(exist_ok=True)
        (sub / f"m{start:08d}.hl7").write_bytes(b"".join(messages[start : start + per_file]))
        files += 1
    old = time.time() - 3600
    for path in folder.rglob("*.hl7"):
        os.utime(path, (old, old))
    return files


def _rss_kib(pid: int) -> int:
    """Resident memory of ``pid`` and its children (the workers), from /proc."""
    total = 0
    pids = [pid]
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        pids += [int(c) for c in children]
    except OSError:
        pass
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


def run(source: Path, out: Path, workers: int) -> tuple[float, int, int]:
    """(seconds, peak RSS in KiB of the batch and its workers together, exit code)."""
    argv = [
        sys.executable, "-m", "leukofhir.cli", "--log-format", "json", "batch", str(source),
        "--out", str(out), "--workers", str(workers), "--now", "2026-01-01T00:00:00Z",
        "--progress", "log",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    start = time.perf_counter()
    process = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    peak = 0
    while process.poll() is None:  # (rusage's ru_maxrss would count this script's memory)
        peak = max(peak, _rss_kib(process.pid))
        time.sleep(0.1)
    elapsed = time.perf_counter() - start
    return elapsed, peak, process.returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--layouts", default="1,100", help="messages per file, comma-separated")
    parser.add_argument("--workers", default="1,2", help="worker counts, comma-separated")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="keep the temporary folders")
    args = parser.parse_args()
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores,"
          f" Python {platform.python_version()}, {args.count} messages")  # fmt: skip
    messages = generate_messages(args.count, args.seed)
    base = Path(tempfile.mkdtemp(prefix="batch-bench-"))
    layouts = [int(x) for x in args.layouts.split(",")]
    counts = {n: write_inputs(base / f"in-{n}", messages, n) for n in layouts}
    del messages
    try:
        for layout in layouts:
            source = base / f"in-{layout}"
            files = counts[layout]
            rates: dict[int, float] = {}
            for workers in (int(x) for x in args.workers.split(",")):
                out = base / f"out-{layout}-{workers}"
                seconds, rss, code = run(source, out, workers)
                rates[workers] = args.count / seconds
                print(
                    f"{layout:>4} msg/file ({files} files)  workers {workers}:"
                    f" {seconds:7.2f} s  {rates[workers]:8,.0f} msg/s"
                    f"  peak RSS {rss / 1024:6.1f} MiB  exit {code}"
                )
                shutil.rmtree(out)
            if 1 in rates and 2 in rates:
                print(f"{layout:>4} msg/file  speed-up 2 workers / 1: {rates[2] / rates[1]:.2f}x")
    finally:
        if not args.keep:
            shutil.rmtree(base)


if __name__ == "__main__":
    main()

"""Throughput and memory of ``leukofhir batch`` with 1 and 2 workers on generated CBC messages.

    python benchmarks/batch_bench.py                    # 100,000 messages (takes minutes)
    python benchmarks/batch_bench.py --count 10000 --layouts 1,100 --workers 1,2
    python benchmarks/batch_bench.py --repeat 5 --layouts 1     # medians of 5 runs
    python benchmarks/batch_bench.py -- --fsync                 # options for leukofhir batch

For each layout (messages per file) the messages are written once to a temporary folder,
then ``leukofhir batch IN --out OUT --now ... --workers N`` runs as a subprocess into a
fresh OUT.  Reported per run: wall time (start-up, scan, processing, writing, ledger,
summary: everything), messages per second, CPU time (user + system, batch and workers),
the CPU time the rest of the machine used meanwhile (others' load on a shared machine:
with 2 cores, each second of it is taken from a 2-worker run), and the peak resident
memory of the batch process and its workers together (sampled from /proc every 0.1 s).
``--workers 1`` runs without a pool (the parent does the work); ``--workers 2`` forks two
workers.  With ``--repeat N`` the configurations are interleaved and medians reported.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Run:
    seconds: float  # wall time
    cpu: float  # user + system seconds of the batch and its workers
    other: float  # CPU seconds the rest of the machine used meanwhile (others' load)
    rss_kib: int  # peak resident memory of the batch and its workers together
    code: int  # exit code


def _busy_seconds() -> float:
    """CPU seconds the whole machine has been busy (every process, kernel threads too)."""
    with open("/proc/stat") as stat:
        ticks = [int(v) for v in stat.readline().split()[1:]]
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")  # minus idle, iowait


def run(source: Path, out: Path, workers: int, extra: list[str]) -> Run:
    """One ``leukofhir batch`` into a fresh OUT, timed."""
    argv = [
        sys.executable, "-m", "leukofhir.cli", "--log-format", "json", "batch", str(source),
        "--out", str(out), "--workers", str(workers), "--now", "2026-01-01T00:00:00Z",
        "--progress", "log", *extra,
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    start = time.perf_counter()
    busy = _busy_seconds()
    process = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    peak = 0
    while True:  # (rusage's ru_maxrss would count this script's memory)
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            break
        peak = max(peak, _rss_kib(process.pid))
        time.sleep(0.1)
    elapsed = time.perf_counter() - start
    busy = _busy_seconds() - busy
    process.returncode = os.waitstatus_to_exitcode(status)
    # the workers are waited for by the batch, so their times are in its rusage
    cpu = usage.ru_utime + usage.ru_stime
    return Run(elapsed, cpu, max(busy - cpu, 0.0), peak, process.returncode)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--layouts", default="1,100", help="messages per file, comma-separated")
    parser.add_argument("--workers", default="1,2", help="worker counts, comma-separated")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=1, help="runs per configuration (median)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folders")
    parser.add_argument("extra", nargs="*", help="more options for leukofhir batch (after --)")
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
            runs: dict[int, list[Run]] = {}
            workers_list = [int(x) for x in args.workers.split(",")]
            for _ in range(args.repeat):  # interleaved, so that a noisy moment hits both
                for workers in workers_list:
                    out = base / f"out-{layout}-{workers}"
                    r = run(source, out, workers, args.extra)
                    runs.setdefault(workers, []).append(r)
                    print(
                        f"{layout:>4} msg/file ({files} files)  workers {workers}:"
                        f" {r.seconds:7.2f} s  {args.count / r.seconds:8,.0f} msg/s"
                        f"  cpu {r.cpu:7.2f} s (others {r.other:6.2f} s)"
                        f"  peak RSS {r.rss_kib / 1024:6.1f} MiB"
                        f"  exit {r.code}",
                        flush=True,
                    )
                    shutil.rmtree(out)
            rates = {}
            for workers, done in runs.items():
                rates[workers] = args.count / statistics.median(r.seconds for r in done)
                rss = statistics.median(r.rss_kib for r in done) / 1024
                others = statistics.median(r.other for r in done)
                print(
                    f"{layout:>4} msg/file  workers {workers}: median of {len(done)}"
                    f" {rates[workers]:8,.0f} msg/s  peak RSS {rss:6.1f} MiB"
                    f"  (others' CPU {others:.1f} s)"
                )
            if 1 in rates and 2 in rates:
                print(f"{layout:>4} msg/file  speed-up 2 workers / 1: {rates[2] / rates[1]:.2f}x")
    finally:
        if not args.keep:
            shutil.rmtree(base)


if __name__ == "__main__":
    main()

"""Peak memory of the batch's ordered scan over one folder of many empty files.

    python benchmarks/scan_bench.py --files 1000000          # makes them in a temporary folder
    python benchmarks/scan_bench.py --files 1000000 --sort-limit 0   # 0: no spilling (old way)

Creates ``--files`` empty files in one folder (mtimes spread over a day, many equal), then
runs :func:`leukofhir.batch.scan.scan` in a fresh subprocess and reports the files found,
the time, the sorted runs spilled and the subprocess's peak RSS (``ru_maxrss``).  The folder
is deleted at the end unless ``--keep``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = """
import resource, sys, time
from pathlib import Path
from leukofhir.batch.scan import ScanStats, scan
folder, limit, spill = Path(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])
stats = ScanStats()
start = time.perf_counter()
count = 0
previous = None
for found in scan(folder, now_ns=time.time_ns(), min_age=0, stats=stats,
                  sort_limit=limit or 10**12, spill_dir=spill):
    key = (found.mtime_ns, found.source)
    assert previous is None or previous < key, "out of order"
    previous = key
    count += 1
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(count, round(time.perf_counter() - start, 1), stats.spilled, peak)
"""


def make_files(folder: Path, count: int) -> None:
    folder.mkdir(parents=True)
    base = time.time() - 2 * 86_400
    for i in range(count):
        path = folder / f"m{(i * 7_919) % count:08d}.hl7"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
        os.close(fd)
        stamp = base + (i * 37) % 86_400  # many files share a second
        os.utime(path, (stamp, stamp))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=1_000_000)
    parser.add_argument("--sort-limit", default="50000,0", help="comma-separated; 0: no limit")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="scan-bench-"))
    try:
        start = time.perf_counter()
        make_files(base / "in", args.files)
        print(f"{args.files} empty files made in {time.perf_counter() - start:.0f} s")
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
        for limit in args.sort_limit.split(","):
            spill = base / "spill"
            spill.mkdir(exist_ok=True)
            argv = [sys.executable, "-c", CHILD, str(base / "in"), limit, str(spill)]
            found, seconds, runs, peak = subprocess.run(
                argv, env=env, check=True, capture_output=True, text=True
            ).stdout.split()
            print(
                f"sort limit {limit or 'none':>6}: {found} files in {seconds} s,"
                f" {runs} runs spilled, peak RSS {int(peak) / 1024:.1f} MiB"
            )
    finally:
        if not args.keep:
            shutil.rmtree(base)


if __name__ == "__main__":
    main()

"""Throughput and memory of FHIR input, through the whole pipeline (read, validate the CBC
resources with the fhir.resources R4B models, rules, Bundle, JSON bytes).

    python benchmarks/bench_fhir.py                      # Bundle of 20 + NDJSON 20k and 100k lines
    python benchmarks/bench_fhir.py --lines 20000 100000 --runs 5

1. one collection Bundle: a DiagnosticReport and 20 Observations (the 19 of a CBC with
   differential and a reticulocyte count), processed --runs × 50 times: reports per second;
2. NDJSON files of --lines lines (per report 8 Observations and a DiagnosticReport that
   references them), each streamed in a fresh process: reports per second and peak RSS, so
   that memory can be compared across file sizes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from leukofhir.context import Context
from leukofhir.emit.jsonio import dumps
from leukofhir.pipeline import process, process_ndjson
from leukofhir.rules import load_rule_set
from leukofhir.terminology import load_terminology

CBC = [  # LOINC, UCUM unit, value
    ("6690-2", "10*9/L", "3.10"),
    ("789-8", "10*12/L", "4.21"),
    ("718-7", "g/dL", "12.9"),
    ("4544-3", "%", "38.1"),
    ("787-2", "fL", "90.5"),
    ("785-6", "pg", "30.6"),
    ("786-4", "g/dL", "33.9"),
    ("788-0", "%", "13.1"),
    ("777-3", "10*9/L", "212"),
    ("751-8", "10*9/L", "1.40"),
    ("731-0", "10*9/L", "1.20"),
    ("742-7", "10*9/L", "0.35"),
    ("711-2", "10*9/L", "0.12"),
    ("704-7", "10*9/L", "0.03"),
    ("770-8", "%", "45.2"),
    ("736-9", "%", "38.7"),
    ("5905-5", "%", "11.3"),
    ("713-8", "%", "3.9"),
    ("706-2", "%", "0.9"),
    ("60474-4", "10*9/L", "51.2"),
]


def observation(ident: str, patient: str, code: str, unit: str, value: str) -> str:
    """One Observation as JSON text (the value written digit for digit)."""
    return (
        f'{{"resourceType":"Observation","id":"{ident}","status":"final",'
        '"category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/'
        'observation-category","code":"laboratory"}]}],'
        f'"code":{{"coding":[{{"system":"http://loinc.org","code":"{code}"}}]}},'
        f'"subject":{{"reference":"Patient/{patient}"}},'
        '"effectiveDateTime":"2026-03-14T08:00:00+01:00",'
        f'"valueQuantity":{{"value":{value},"unit":"{unit}","system":"http://unitsofmeasure.org",'
        f'"code":"{unit}"}}}}'
    )


def report(ident: str, patient: str, members: list[str]) -> str:
    results = ",".join(f'{{"reference":"Observation/{m}"}}' for m in members)
    return (
        f'{{"resourceType":"DiagnosticReport","id":"{ident}","status":"final",'
        '"code":{"coding":[{"system":"http://loinc.org","code":"58410-2"}]},'
        f'"subject":{{"reference":"Patient/{patient}"}},'
        f'"effectiveDateTime":"2026-03-14T08:00:00+01:00","result":[{results}]}}'
    )


def bundle() -> bytes:
    entries = [report("dr1", "p1", [f"o{i}" for i in range(len(CBC))])]
    entries += [observation(f"o{i}", "p1", *line) for i, line in enumerate(CBC)]
    resources: list[Any] = [json.loads(text) for text in entries]
    base = "https://lab.example.org/fhir"
    return json.dumps(
        {
            "resourceType": "Bundle",
            "type": "collection",
            "entry": [
                {"fullUrl": f"{base}/{r['resourceType']}/{r['id']}", "resource": r}
                for r in resources
            ],
        }
    ).encode()


def write_ndjson(path: Path, lines: int) -> None:
    with path.open("w", encoding="utf-8") as out:
        written, patient = 0, 0
        while written < lines:
            members = []
            for j, (code, unit, value) in enumerate(CBC[9:17]):
                members.append(f"p{patient}-{j}")
                out.write(observation(members[-1], f"p{patient}", code, unit, value) + "\n")
            out.write(report(f"dr{patient}", f"p{patient}", members) + "\n")
            written += len(members) + 1
            patient += 1


def context() -> Context:
    return Context(
        now=datetime(2026, 1, 1, tzinfo=UTC),
        terminology=load_terminology(),
        rule_set=load_rule_set(),
    )


def run_ndjson(path: str) -> None:
    """Child process: stream one NDJSON file, print reports, seconds and peak RSS."""
    ctx = context()
    start = time.perf_counter()
    reports = 0
    with open(path, "rb") as handle:
        for outcome in process_ndjson(handle, ctx):
            for document in outcome.documents():
                dumps(document)
            reports += 1
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"reports": reports, "seconds": seconds, "peak_mb": peak}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--lines", type=int, nargs="*", default=[20_000, 100_000])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run_ndjson(args.child)
        return
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python"
        f" {platform.python_version()}, {platform.system()} {platform.release()}"
    )
    ctx, data, per_run = context(), bundle(), 50
    timings = []
    for _ in range(args.runs):
        start = time.perf_counter()
        for _ in range(per_run):
            for outcome in process(data, ctx):
                for document in outcome.documents():
                    dumps(document)
        timings.append((time.perf_counter() - start) / per_run)
    median = statistics.median(timings)
    print(
        f"Bundle (DiagnosticReport + 20 Observations): {median * 1e3:.2f} ms per report,"
        f" {1 / median:.0f} reports/s (median of {args.runs} runs)"
    )
    with tempfile.TemporaryDirectory() as folder:
        for lines in args.lines:
            path = Path(folder) / f"{lines}.ndjson"
            write_ndjson(path, lines)
            result = json.loads(
                subprocess.run(
                    [sys.executable, __file__, "--child", str(path)],
                    check=True,
                    capture_output=True,
                    text=True,
                ).stdout
            )
            print(
                f"NDJSON {lines:,} lines ({path.stat().st_size / 1e6:.0f} MB):"
                f" {result['reports']:,} reports in {result['seconds']:.1f} s,"
                f" {result['reports'] / result['seconds']:.0f} reports/s,"
                f" peak RSS {result['peak_mb']:.0f} MB"
            )


if __name__ == "__main__":
    main()

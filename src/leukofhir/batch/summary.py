"""The end of a batch: ``summary.json``, a human summary, the skipped/rejected listings,
and progress while it runs (a rich bar on a terminal, structured log lines otherwise)."""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from leukofhir.batch.ledger import Ledger
from leukofhir.batch.store import Store
from leukofhir.logs import Logger

__all__ = ["Progress", "RunCounts", "build_summary", "render_summary", "write_listings"]


@dataclass(slots=True)
class RunCounts:
    """What this run did (the ledger holds the totals over every run)."""

    files: Counter[str] = field(default_factory=Counter)  # new, unchanged, unreadable ...
    messages: Counter[str] = field(default_factory=Counter)  # processed, skipped, rejected
    started: float = field(default_factory=time.monotonic)

    @property
    def done(self) -> int:
        return sum(self.messages.values())


def build_summary(
    ledger: Ledger,
    run: RunCounts,
    *,
    left: Counter[str],
    scan_errors: list[str],
    passed_over: list[tuple[str, str]] | None = None,
    stopped: str = "",
) -> dict[str, Any]:
    elapsed = time.monotonic() - run.started
    totals = ledger.counts()
    findings = ledger.findings()
    noted, notes = ledger.noted()
    by_kind: Counter[str] = Counter()
    for name, count in findings.items():
        by_kind[name.split(" ")[0]] += count
    return {
        "messages": {
            "total": sum(totals.values()),
            "processed": totals["processed"],
            "skipped": totals["skipped"],
            "rejected": totals["rejected"],
        },
        "reports": ledger.total_reports(),
        "findings": {
            "by_kind": dict(sorted(by_kind.items())),
            "by_kind_and_grade": dict(sorted(findings.items())),
        },
        "notes": {  # information-only issues of processed messages: no file, see the ledger
            "messages": noted,
            "issues": notes,
            "where": "ledger.sqlite: messages.notes",
        },
        "rejected_top_reasons": [
            {"reason": reason, "count": count} for reason, count in ledger.top_reasons()
        ],
        "files": dict(sorted(ledger.file_counts().items())),
        "this_run": {
            "messages": dict(sorted(run.messages.items())),
            "files": dict(sorted(run.files.items())),
            "left_for_later_or_ignored": dict(sorted(left.items())),
            "folders_unreadable": scan_errors[:100],
            "passed_over": [
                {"path": path, "reason": reason} for path, reason in (passed_over or [])[:100]
            ],
            "elapsed_seconds": round(elapsed, 3),
            "messages_per_second": round(run.done / elapsed, 1) if elapsed > 0 else 0.0,
            "stopped": stopped,
        },
    }


def render_summary(summary: dict[str, Any]) -> str:
    m = summary["messages"]
    run = summary["this_run"]
    lines = [
        f"messages: {m['total']} ({m['processed']} processed, {m['skipped']} skipped,"
        f" {m['rejected']} rejected); reports: {summary['reports']}",
        f"this run: {sum(run['messages'].values())} messages in {run['elapsed_seconds']} s"
        f" ({run['messages_per_second']}/s); files {_pairs(run['files'])}",
    ]
    if summary["findings"]["by_kind_and_grade"]:
        lines.append("findings: " + _pairs(summary["findings"]["by_kind_and_grade"]))
    if summary["notes"]["messages"]:
        lines.append(
            f"notes: {summary['notes']['messages']} processed messages carry information-only"
            f" issues ({summary['notes']['issues']}), kept in {summary['notes']['where']}"
        )
    for item in summary["rejected_top_reasons"][:5]:
        lines.append(f"  rejected ×{item['count']}: {item['reason']}")
    if run["left_for_later_or_ignored"]:
        lines.append("left: " + _pairs(run["left_for_later_or_ignored"]))
    for error in run["folders_unreadable"][:5]:
        lines.append(f"folder not readable: {error}")
    for item in run["passed_over"][:5]:
        lines.append(f"passed over: {item['path']}: {item['reason']}")
    delivery = summary.get("delivery")
    if delivery is not None:
        documents = delivery["documents"]
        lines.append(
            f"delivery to {delivery['server']}: {documents['delivered']} delivered,"
            f" {documents['pending']} pending ({documents['held_behind_dead_letter']} held"
            f" behind a dead letter), {documents['dead']} dead letters"
            + (f" (in {delivery['dead_letters_folder']}/)" if documents["dead"] else "")
        )
        for letter in delivery["dead_letters"][:5]:
            lines.append(f"  dead letter {letter['key']}: {letter['reason']}")
    if run["stopped"]:
        lines.append(f"STOPPED: {run['stopped']}")
    return "\n".join(lines)


def _pairs(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in counts.items()) or "none"


def write_listings(ledger: Ledger, store: Store, summary: dict[str, Any]) -> None:
    """``skipped.ndjson`` and ``rejected.ndjson`` (from the ledger, so they are complete and
    the same after any crash), then ``summary.json``."""
    for outcome in ("skipped", "rejected"):
        lines = [
            json.dumps(
                {
                    "source": row["source"],
                    "offset": row["offset"],
                    "message": row["idx"] + 1,
                    "control_id": row["control_id"],
                    "reason": row["reason"],
                    "outputs": json.loads(row["outputs"]),
                },
                ensure_ascii=False,
            )
            for row in ledger.rows(outcome)
        ]
        store.write(f"{outcome}.ndjson", "".join(line + "\n" for line in lines).encode())
    store.write("summary.json", json.dumps(summary, indent=2, ensure_ascii=False).encode() + b"\n")


class Progress:
    """A rich progress bar on a terminal; otherwise a structured log line every ``every`` s."""

    def __init__(self, log: Logger, *, bar: bool | None = None, every: float = 10.0):
        self._log = log
        self._every = every
        self._last = time.monotonic()
        self._bar = sys.stderr.isatty() if bar is None else bar
        self._progress: Any = None
        self._task: Any = None
        self._sent: Any = None  # the bar of delivered documents

    @property
    def has_bar(self) -> bool:
        return self._bar

    def __enter__(self) -> Progress:
        if self._bar:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                TaskProgressColumn,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )
            from rich.progress import Progress as RichProgress

            self._progress = RichProgress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TaskProgressColumn(),
                TextColumn("{task.fields[rate]}"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=Console(stderr=True),  # stdout carries only the summary
                transient=False,
            )
            self._progress.__enter__()
            self._task = self._progress.add_task("files", total=None, rate="0 msg/s")
        return self

    def _delivery_task(self) -> Any:
        if self._sent is None:
            self._sent = self._progress.add_task("delivered", total=None, rate="")
        return self._sent

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._progress is not None:
            self._progress.__exit__(kind, value, traceback)

    def set_total(self, files: int) -> None:
        """Files to look at (counted in the background): makes the ETA possible."""
        if self._progress is not None:
            self._progress.update(self._task, total=files)

    def update(self, run: RunCounts, delivery: tuple[int, int] | None = None) -> None:
        """``delivery``: (documents delivered by this run, attempts to be retried)."""
        elapsed = max(time.monotonic() - run.started, 1e-9)
        rate = run.done / elapsed
        if self._progress is not None:
            self._progress.update(
                self._task, completed=sum(run.files.values()), rate=f"{rate:,.0f} msg/s"
            )
            if delivery is not None:
                self._progress.update(
                    self._delivery_task(),
                    completed=delivery[0],
                    rate=f"{delivery[0] / elapsed:,.1f} doc/s, {delivery[1]} retried",
                )
            return
        now = time.monotonic()
        if now - self._last >= self._every:
            self._last = now
            sent = {} if delivery is None else {"delivered": delivery[0], "retried": delivery[1]}
            self._log.info(
                "progress",
                files=sum(run.files.values()),
                messages=run.done,
                rate=round(rate, 1),
                **{f"messages_{k}": v for k, v in run.messages.items()},
                **sent,
            )

"""The readable ``replay`` summary for a terminal (rich): per report the CBC values with
their interpretation, the findings with grade, priority and considerations, and the issues."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from rich.console import Console
from rich.table import Table
from rich.text import Text

from leukofhir.emit.bundle import value_key
from leukofhir.errors import Severity
from leukofhir.model import CbcValue
from leukofhir.pipeline import Disposition, MessageOutcome, ReportOutcome

PRIORITY = {"PL": "low", "PM": "medium", "PH": "high"}
STYLE = {
    Disposition.PROCESSED: "green",
    Disposition.SKIPPED: "yellow",
    Disposition.REJECTED: "bold red",
}
SEVERITY_STYLE = {
    Severity.FATAL: "bold red",
    Severity.ERROR: "red",
    Severity.WARNING: "yellow",
    Severity.INFORMATION: "dim",
}


class SummaryPrinter:
    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console()

    def print(self, path: Path, outcome: MessageOutcome) -> None:
        head = Text(f"{path} · {outcome.label} · ")
        head.append(outcome.disposition.value, style=STYLE[outcome.disposition])
        self.console.rule(head, align="left")
        for report in outcome.reports:
            self._report(report)
        for issue in outcome.issues:
            where = f"{issue.location}: " if str(issue.location) else ""
            self.console.print(
                Text(
                    f"  {issue.severity.value:<11} {where}{issue.message}",
                    style=SEVERITY_STYLE[issue.severity],
                )
            )

    def _report(self, report: ReportOutcome) -> None:
        lab, evaluation = report.cbc.report, report.evaluation
        status = next(
            e["resource"]["status"]
            for e in report.bundle["entry"]
            if e["resource"]["resourceType"] == "DiagnosticReport"
        )
        self.console.print(
            Text(
                f"  {lab.location} {lab.code_text or 'CBC'} · {lab.effective} · {status}",
                style="bold",
            )
        )
        interpretations = {value_key(v): i for v, i in evaluation.interpretations}
        table = Table(show_header=True, header_style="dim", box=None, padding=(0, 2))
        for column in ("line", "field", "value", "unit", "normalised", "interp."):
            table.add_column(column)
        for value in (*report.cbc.values, *report.cbc.superseded):
            found = interpretations.get(value_key(value))
            table.add_row(*_row(value), found.code if found else "")
        self.console.print(table)
        for finding in evaluation.findings:
            grade = f", grade {finding.grade}" if finding.grade is not None else ""
            line = Text(f"  ● {finding.text}", style="bold red" if finding.critical else "bold")
            line.append(f"  [{PRIORITY.get(finding.priority, finding.priority)} priority{grade}]")
            self.console.print(line)
            for evidence in finding.evidence:
                self.console.print(f"      evidence: {_value(evidence.value)} {evidence.threshold}")
            if finding.considerations:
                self.console.print(f"      consider: {'; '.join(finding.considerations)}")
        if not evaluation.findings:
            partial = " among the rules that could be evaluated" if evaluation.not_evaluated else ""
            self.console.print(f"  no finding{partial}", style="yellow" if partial else "green")
        for item in evaluation.not_evaluated:
            self.console.print(
                Text(f"  not evaluated: {item.rule_id}: {item.reason}", style="yellow")
            )

    def totals(self, counts: Counter[str]) -> None:
        parts = [f"{counts[k]} {k}" for k in ("processed", "skipped", "rejected")]
        for extra in ("unreadable files", "skipped paths"):
            if counts[extra]:
                parts.append(f"{counts[extra]} {extra}")
        self.console.rule(Text(" · ".join(parts), style="bold"))


def _row(value: CbcValue) -> tuple[str, str, str, str, str]:
    obs = value.observation
    line = str(obs.location) if obs else "derived"
    sent = (obs.value.text if obs and obs.value else "") if obs else ""
    unit = (obs.unit.code if obs and obs.unit else "") if obs else ""
    normalised = value.problem or _value(value)
    return line, f"{value.analyte.value} {value.measure.value}", sent, unit, normalised


def _value(value: CbcValue) -> str:
    return value.shown or value.problem or "no value"

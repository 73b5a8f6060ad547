"""HL7 v2 ORU^R01 messages for the clinical-context tests: a patient with a birth date
(PID-7), a collection time (OBR-7), an ordering provider (ORC-12) and counts in 10*9/L."""

from __future__ import annotations

from leukofhir.context import Context
from leukofhir.model import Evaluation
from leukofhir.pipeline import MessageOutcome, process

WBC, ANC, ALC, HGB, PLT = "6690-2", "751-8", "731-0", "718-7", "777-3"
UNITS = {WBC: "10*9/L", ANC: "10*9/L", ALC: "10*9/L", HGB: "g/dL", PLT: "10*9/L"}


def oru(
    *,
    birth: str = "19800101",
    collected: str = "20250301080000+0000",
    counts: dict[str, str] | None = None,
    patient: str = "P100",
    order: str = "F100",
    control: str = "C100",
    provider: str = "1234567890^Okafor^Ada^^^^^^NPI^^^^NPI",
    extra: tuple[str, ...] = (),
) -> bytes:
    """One report; ``counts`` by LOINC code (default: a normal adult CBC)."""
    counts = counts or {WBC: "6.0", ANC: "3.5", ALC: "2.0"}
    obx = [
        f"OBX|{n}|NM|{code}^{code}^LN||{value}|{UNITS[code]}|||||F|||{collected}"
        for n, (code, value) in enumerate(counts.items(), start=1)
    ]
    segments = [
        f"MSH|^~\\&|LIS|LAB|EHR|HOSP|{collected}||ORU^R01|{control}|P|2.5.1",
        f"PID|1||{patient}^^^HOSP^MR||Doe^Jo||{birth}|F",
        f"ORC|RE|{order}P^EHR|{order}^LAB||CM||||{collected}|||{provider}",
        f"OBR|1|{order}P^EHR|{order}^LAB|57021-8^CBC^LN|||{collected}|||||||||{provider}"
        f"||||||{collected}|||F",
        *obx,
        *extra,
    ]
    return ("\r".join(segments) + "\r").encode()


def outcome_of(data: bytes, context: Context) -> MessageOutcome:
    (outcome,) = process(data, context)
    return outcome


def evaluation_of(data: bytes, context: Context) -> Evaluation:
    (report,) = outcome_of(data, context).reports
    return report.evaluation


def found(evaluation: Evaluation) -> dict[str, tuple[int | None, str]]:
    """rule id → (grade, priority) of every finding."""
    return {f.rule_id: (f.grade, f.priority) for f in evaluation.findings}


def skipped(evaluation: Evaluation) -> dict[str, str]:
    """rule id → why it was not evaluated."""
    return {n.rule_id: n.reason for n in evaluation.not_evaluated}

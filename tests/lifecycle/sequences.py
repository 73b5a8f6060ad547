"""Per-patient CBC sequences for the lifecycle tests: reports (one per day), their versions
(preliminary, final, corrected) and HL7 v2 ORU^R01 messages for each version."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

START = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Version:
    """One version of one report: its status (OBR-25/OBX-11), counts and send time."""

    report: int  # the day of the report (0, 1, ...): also its order number
    status: str  # P | F | C
    wbc: str
    anc: str
    sent_hours: int  # hours after collection when this version was sent
    drop_anc: bool = False  # a version without the ANC line


def hl7(patient: str, version: Version) -> bytes:
    """An ORU^R01 (v2.5.1) for ``version`` of report ``version.report`` of ``patient``."""
    collected = START + timedelta(days=version.report)
    sent = collected + timedelta(hours=version.sent_hours)
    c, s = _dtm(collected), _dtm(sent)
    order = f"{patient}-{version.report:03d}"
    control = f"{order}-{version.status}{version.sent_hours}"
    st = version.status
    segments = [
        f"MSH|^~\\&|LAB|GEN|EHR|GEN|{s}||ORU^R01^ORU_R01|{control}|P|2.5.1",
        f"PID|1||{patient}^^^GEN^MR||DOE^JANE||19700101|F",
        f"ORC|RE||{order}^LAB",
        f"OBR|1||{order}^LAB|58410-2^CBC^LN|||{c}|||||||||||||||{s}||HM|{st}",
        f"OBX|1|NM|6690-2^WBC^LN||{version.wbc}|10*9/L|4.3-10.8||||{st}|||{c}",
        f"OBX|2|NM|718-7^HGB^LN||13.9|g/dL|12.0-16.0||||{st}|||{c}",
        f"OBX|3|NM|777-3^PLT^LN||210|10*9/L|150-400||||{st}|||{c}",
    ]
    if not version.drop_anc:
        segments.append(f"OBX|4|NM|751-8^NEUT ABS^LN||{version.anc}|10*9/L|1.5-8.0||||{st}|||{c}")
    return ("\r".join(segments) + "\r").encode()


def _dtm(moment: datetime) -> str:
    return moment.strftime("%Y%m%d%H%M%S+0000")

"""The service journal's outbox: a finished message's Bundles queued with its outcome, in
one transaction; where a message's Bundles stand; retention of delivered documents."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from leukofhir.delivery.keys import facts_key
from leukofhir.serve.journal import Arrival, Completion, Journal
from leukofhir.serve.upkeep import prune_outbox
from leukofhir.serve.work import Outbound

NOW = "2026-01-01T00:00:00+00:00"


def received(journal: Journal, count: int) -> list[int]:
    arrivals = [
        Arrival("LAB|X", f"C{n}", f"{n:064x}", "hl7v2", "mllp", b"MSH|x") for n in range(count)
    ]
    return [entry.id for entry in journal.receive(arrivals, NOW)]


def test_bundles_are_queued_with_the_outcome_and_counted_per_message(tmp_path: Path) -> None:
    journal = Journal(tmp_path, durable=False, outbox=True)
    ids = received(journal, 130)
    first, twelfth, last = ids[0], ids[11], ids[122]  # entries 1, 12 and 123: no key mixes them
    completions = [
        Completion(first, "processed", "AA", b"ACK", documents=(
            Outbound("processed/a.r1.bundle.json", "sys|p1", b"{1}"),
            Outbound("processed/a.r2.bundle.json", "", b"{2}"),
        )),
        Completion(twelfth, "processed", "AA", b"ACK", documents=(
            Outbound("processed/b.r1.bundle.json", "sys|p1", b"{3}"),
        )),
        Completion(last, "processed", "AA", b"ACK", documents=(
            Outbound("processed/c.r1.bundle.json", "sys|p2", b"{4}"),
        )),
        Completion(ids[1], "failed", "AR", b"AR", documents=(  # a failed one queues nothing
            Outbound("processed/d.r1.bundle.json", "sys|p3", b"{5}"),
        )),
    ]  # fmt: skip
    assert journal.complete(completions, NOW) == []
    assert journal.outbox is not None
    rows = journal.outbox.ready(time.time(), 10)
    assert [(r.key, r.seq, r.data) for r in sorted(rows, key=lambda r: r.seq)] == [
        (f"j{first}/processed/a.r1.bundle.json", 1, b"{1}"),
        (f"j{first}/processed/a.r2.bundle.json", 2, b"{2}"),
        (f"j{last}/processed/c.r1.bundle.json", 4, b"{4}"),
    ]  # j12's waits behind j1's first document: the same patient
    patients = {r.key: r.patient for r in rows}
    assert patients[f"j{first}/processed/a.r1.bundle.json"] == facts_key("sys|p1")
    assert "p1" not in str(patients)
    assert (
        patients[f"j{first}/processed/a.r2.bundle.json"] == f"j{first}/processed/a.r2.bundle.json"
    )
    assert (journal.delivery(first).documents, journal.delivery(first).done) == (2, False)
    assert journal.delivery(twelfth).documents == journal.delivery(last).documents == 1
    assert journal.delivery(ids[1]).documents == 0
    for row in rows:
        journal.outbox.delivered(row.id, time.time() - 3600, 200)
    assert journal.delivery(first).done
    assert not journal.delivery(twelfth).done

    pruned = asyncio.run(prune_outbox(journal, datetime.now(UTC) - timedelta(minutes=1)))
    assert pruned == 3
    assert journal.delivery(first).documents == 0  # forgotten once delivered and old
    assert journal.delivery(twelfth).documents == 1  # pending: never pruned
    journal.close()

"""The outbox in PostgreSQL (``serve --journal postgresql://...``): the SQLite outbox's
tables, statements and rules (:mod:`leukofhir.delivery.outbox`), run by a
:class:`leukofhir.pgsql.Session`, with one addition for deliverers on several hosts.

Every host's service runs a deliverer on the same outbox.  :meth:`PostgresOutbox.ready`
*claims* what it hands out: column ``claimed`` takes the deliverer's session id (its owner,
alive while its connection lives: :mod:`leukofhir.pgsql`), in one statement that skips
rows another deliverer is claiming at that moment (``FOR UPDATE SKIP LOCKED``).  No other
deliverer hands a document out while its claimant lives, so two hosts never send the same
document at once; a document whose deliverer died (its session gone) is free again.  The
claim outlives the attempt on purpose: a document scheduled for a retry stays with the
deliverer that tried it.  One patient's order holds across hosts as on one: a document is
handed out only when it is the first undelivered one of its patient.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from contextlib import contextmanager
from pathlib import Path

from leukofhir.delivery.deadletter import DeadLetterFolder
from leukofhir.delivery.outbox import _BEHIND, Pending, SqliteOutbox, _not_in, _progress
from leukofhir.pgsql import LIVE_OWNERS, Session

__all__ = ["PostgresOutbox"]


class PostgresOutbox(SqliteOutbox):
    def __init__(
        self,
        session: Session,
        *,
        dead_letters: Path | None = None,
        durable: bool | None = None,
    ) -> None:
        """The tables are the journal's (:mod:`leukofhir.serve.pgjournal` creates them).
        ``durable`` as for :class:`SqliteOutbox` (None: the session's setting stays)."""
        self._db = self._session = session
        self._durable = durable
        self._dead = DeadLetterFolder(dead_letters) if dead_letters is not None else None
        self._free = (
            f" AND (claimed = 0 OR claimed = {session.owner} OR claimed NOT IN ({LIVE_OWNERS}))"
        )

    def ready(self, now: float, limit: int, busy: Collection[str] = ()) -> list[Pending]:
        """As :meth:`SqliteOutbox.ready`, of the documents no live deliverer but this one
        holds; they are claimed for this one."""
        exclude, args = _not_in(busy)
        rows = self._db.execute(
            "WITH taken AS (UPDATE outbox SET claimed = ? WHERE id IN ("
            " SELECT o.id FROM outbox AS o"
            f" WHERE state = 'pending' AND next_attempt <= ?{exclude} AND NOT {_BEHIND}"
            f"{self._free} ORDER BY next_attempt, seq, o.id LIMIT ? FOR UPDATE SKIP LOCKED)"
            " RETURNING id, key, patient, seq, attempts, first_attempt, progress, next_attempt)"
            " SELECT t.id, key, patient, seq, d.data, attempts, first_attempt, progress"
            " FROM taken AS t JOIN outbox_data AS d ON d.id = t.id"
            " ORDER BY next_attempt, seq, t.id",
            (self._session.owner, now, *args, limit),
        )
        return [
            Pending(int(i), str(k), str(p), int(s), bytes(d), int(a), f, _progress(str(progress)))
            for i, k, p, s, d, a, f, progress in rows
        ]

    @contextmanager
    def _transaction(self, *, synced: bool) -> Iterator[None]:
        with self._session.transaction(None if self._durable is None else synced and self._durable):
            yield

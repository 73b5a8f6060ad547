"""One PostgreSQL session for the service's journal and outbox (psycopg 3, ``pip install
'leukofhir[postgres]'``; imported only when a ``postgresql://`` URL is used).

Dialect.  The journal (:mod:`leukofhir.serve.journal`) and the outbox
(:mod:`leukofhir.delivery.outbox`) write their SQL once, with ``?`` placeholders and
statements both databases run (``ON CONFLICT``, ``RETURNING``, ``FILTER``); a
:class:`Session` runs them on PostgreSQL with psycopg's ``%s``.  What differs (the schema,
the transaction's start, how a process is known to be alive) is in the PostgreSQL classes.

Owners.  A service process working on a message marks it with its *owner*: on SQLite the
process id (the processes share one machine), here a session id from the sequence
``journal_owner``.  The session holds a session-level advisory lock on its id for as long
as its connection lives, and "is owner N alive?" is "is that lock held?"
(``pg_locks``).  A process that dies, or a host that goes, loses its connection, and
PostgreSQL frees the lock: no heartbeat to write, no clocks to compare, no lease to tune.
A host that vanishes without closing its socket is noticed by the server's TCP
keepalives, which the session sets to about 25 s (``tcp_keepalives_*``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

from leukofhir.errors import UsageError

if TYPE_CHECKING:
    import psycopg

__all__ = ["LIVE_OWNERS", "Database", "Session", "shown"]

_OWNER_CLASS = 0x6C6A6F75  # "ljou": the advisory locks of live owners are (class, owner)
# the owners whose sessions are alive now (in this database)
LIVE_OWNERS = (
    "SELECT objid::bigint FROM pg_locks WHERE locktype = 'advisory'"
    f" AND classid = {_OWNER_CLASS} AND objsubid = 2 AND granted"
    " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
)
_KEEPALIVE = (
    "SET tcp_keepalives_idle = 10; SET tcp_keepalives_interval = 5; SET tcp_keepalives_count = 3"
)


class Database(Protocol):
    """A connection in autocommit mode that runs the journal's and the outbox's SQL:
    SQLite's, or a :class:`Session`."""

    def execute(self, sql: str, params: Any = (), /) -> Any: ...

    def executemany(self, sql: str, rows: Any, /) -> Any: ...

    def close(self) -> None: ...


def shown(url: str) -> str:
    """``url`` without its user and password (for messages and logs)."""
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.rpartition('@')[2]}"


class Session:
    """A connection in autocommit mode (transactions are explicit: :meth:`transaction`)
    with this session's owner id held."""

    def __init__(self, url: str, migrate: Callable[[Any], object]) -> None:
        """``migrate(connection)``: create or upgrade the tables first.  Raises UsageError
        (naming the URL without its password) when psycopg is missing or the database cannot
        be reached or set up."""
        from leukofhir.lifecycle.pgstore import connect

        self._sql: dict[str, str] = {}
        self.owner = 0
        try:
            self.db: psycopg.Connection[tuple[Any, ...]] = connect(url, self._prepare(migrate))
        except ImportError:
            raise UsageError(
                f"{shown(url)}: psycopg is missing: pip install 'leukofhir[postgres]'"
            ) from None
        except (ConnectionError, RuntimeError) as exc:  # RuntimeError: a newer schema
            raise UsageError(f"{shown(url)}: {_reason(exc.__cause__ or exc, url)}") from None

    def _prepare(self, migrate: Callable[[Any], object]) -> Callable[[Any], None]:
        """The tables migrated, the keepalives set, this session's owner id taken and held."""

        def prepare(db: psycopg.Connection[tuple[Any, ...]]) -> None:
            migrate(db)
            db.execute(_KEEPALIVE)
            row = db.execute("SELECT nextval('journal_owner')").fetchone()
            assert row is not None
            self.owner = int(row[0])
            db.execute("SELECT pg_advisory_lock(%s, %s)", (_OWNER_CLASS, self.owner))

        return prepare

    def execute(self, sql: str, params: Sequence[Any] = ()) -> psycopg.Cursor[tuple[Any, ...]]:
        return self.db.execute(self._translated(sql), params)

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            with self.db.cursor() as cursor:
                cursor.executemany(self._translated(sql), rows)

    def alive(self, owner: int) -> bool:
        row = self.db.execute(f"SELECT %s IN ({LIVE_OWNERS})", (owner,)).fetchone()
        return bool(row and row[0])

    @contextmanager
    def transaction(self, synced: bool | None = None) -> Iterator[None]:
        """A transaction in pipeline mode: statements whose results are not read go with
        the next one that is read (BEGIN, locks, writes, COMMIT: few round trips).
        ``synced``: its commit waits for the WAL on disk (``synchronous_commit``; None:
        the server's setting)."""
        with self.db.pipeline(), self.db.transaction():
            if synced is not None:
                self.db.execute(f"SET LOCAL synchronous_commit = {'on' if synced else 'off'}")
            yield

    def close(self) -> None:
        self.db.close()

    def _translated(self, sql: str) -> str:
        translated = self._sql.get(sql)
        if translated is None:
            translated = self._sql[sql] = sql.replace("?", "%s")
        return translated


def _reason(exc: BaseException, url: str) -> str:
    """The first line of the error, never with the URL's password in it."""
    text = str(exc).strip()
    reason = text.splitlines()[0] if text else type(exc).__name__
    password = urlsplit(url).password
    return reason.replace(password, "***") if password else reason

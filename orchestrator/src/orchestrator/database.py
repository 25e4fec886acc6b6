"""The database every orchestrator replica shares: records, jobs, their events, idempotency keys.

One schema and one code path (SQLAlchemy Core over its async drivers) for two engines:

- **SQLite** (the default): a file under ``DATA_DIR`` in WAL mode, no server. One process owns
  it (``DATA_DIR/.lock``, storage.py), so its writes are serialised by a lock in this process:
  SQLite has one writer at a time, and a transaction that waits inside the driver for another
  would turn into ``database is locked``.
- **PostgreSQL** (``DATABASE_URL=postgresql://...``): any number of orchestrators. Jobs are
  claimed with row locks (``FOR UPDATE SKIP LOCKED``), the queue bound is checked under a
  transaction-scoped advisory lock, so the bound holds across replicas.

Tables:

- ``generations``: one row per generation, the record (``metadata.json``'s JSON) and the
  columns the listing and idempotency need (keyset pagination on ``(created_at, id)``).
- ``jobs``: one row per generation still queued or running: who runs it (``owner``) and until
  when its lease holds, what another replica needs to run it again (an upload's bytes), and a
  cancellation request from another replica.
- ``job_events``: each job's Server-Sent Events, for clients connected to another replica and
  for resumption there; pruned once the job has ended a while ago.
- ``generation_counts``: the number of generations per status (the listing's ``total``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from sqlalchemy import (
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    event,
    text,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

SQLITE_FILE = "orchestrator.db"
# The advisory lock key that serialises submissions (the queue bound, idempotency keys) across
# PostgreSQL replicas: any constant, the same in every replica.
_QUEUE_LOCK_KEY = 0x3D5C_E7E5

metadata = MetaData()

generations = Table(
    "generations", metadata,
    Column("id", String(32), primary_key=True),
    Column("status", String(16), nullable=False),
    # ISO 8601 UTC with microseconds and "Z": sorts as the time does.
    Column("created_at", String(40), nullable=False),
    Column("idempotency_key", String(255)),
    Column("fingerprint", String(64)),
    # The whole record (GenerationRecord's JSON, what metadata.json holds).
    Column("record", Text, nullable=False),
    Index("generations_newest", "created_at", "id"),
    Index("generations_status_newest", "status", "created_at", "id"),
    Index("generations_idempotency_key", "idempotency_key"),
)

jobs = Table(
    "jobs", metadata,
    Column("id", String(32), primary_key=True),
    Column("status", String(16), nullable=False),
    Column("created_at", String(40), nullable=False),
    # The replica that runs the job (or holds it in its queue), and until when (epoch seconds)
    # its lease holds; a replica renews the leases of its jobs while it lives.
    Column("owner", String(64)),
    Column("lease_until", Float),
    # Whether another replica can run the job again (its inputs are here, below): uploads
    # submitted to /jobs. A prompt's key never leaves the memory of the replica that took it,
    # and a /generate request waits on its own replica, so those end with it.
    Column("resumable", Boolean, nullable=False, default=False),
    Column("inputs", Text),
    Column("image", LargeBinary),
    Column("attempts", Integer, nullable=False, default=0),
    # Set by a replica that was asked to cancel a job another one runs.
    Column("cancel_reason", Text),
    Index("jobs_owner", "owner"),
    Index("jobs_lease", "lease_until"),
    Index("jobs_status_created", "status", "created_at"),
)

# How many generations have each status: the listing's `total` without counting rows (a count
# over 100,000 rows costs more than the page itself). Kept by the store in the transaction of
# every write and delete, recounted when records are imported.
generation_counts = Table(
    "generation_counts", metadata,
    Column("status", String(16), primary_key=True),
    Column("n", Integer, nullable=False),
)

job_events = Table(
    "job_events", metadata,
    Column("job_id", String(32), primary_key=True),
    Column("event_id", Integer, primary_key=True, autoincrement=False),
    Column("name", String(16), nullable=False),
    Column("data", Text, nullable=False),
    Column("created", Float, nullable=False),
    Index("job_events_created", "created"),
)


def resolve_url(database_url: str, data_dir: Path) -> str:
    """The SQLAlchemy URL of ``DATABASE_URL``: empty means the SQLite file under ``data_dir``;
    ``postgresql://`` (as libpq and every hosting service write it) gets the asyncpg driver."""
    if not database_url:
        return f"sqlite+aiosqlite:///{(Path(data_dir) / SQLITE_FILE).resolve()}"
    url = make_url(database_url)
    if url.drivername in ("postgres", "postgresql"):
        url = url.set(drivername="postgresql+asyncpg")
    elif url.drivername == "sqlite":
        url = url.set(drivername="sqlite+aiosqlite")
    return url.render_as_string(hide_password=False)


class Database:
    def __init__(self, url: str):
        self.url = url
        self.is_sqlite = make_url(url).get_backend_name() == "sqlite"
        self.engine: AsyncEngine | None = None
        # SQLite: one writer at a time, in this process (see the module's docstring).
        self._write_lock = asyncio.Lock() if self.is_sqlite else None

    @property
    def dialect_insert(self):
        return sqlite.insert if self.is_sqlite else postgresql.insert

    async def open(self) -> None:
        if self.is_sqlite:
            engine = create_async_engine(self.url)

            @event.listens_for(engine.sync_engine, "connect")
            def _pragmas(dbapi_connection, _record) -> None:
                cursor = dbapi_connection.cursor()
                # WAL: readers never wait for the writer. NORMAL: a commit survives a crash of
                # the process (not of the machine), the files' own guarantee too.
                cursor.execute("PRAGMA journal_mode=WAL")
                cursor.execute("PRAGMA synchronous=NORMAL")
                cursor.execute("PRAGMA busy_timeout=10000")
                cursor.close()
        else:
            engine = create_async_engine(self.url, pool_pre_ping=True, pool_size=10,
                                         max_overflow=10)
        self.engine = engine
        async with self.transaction() as conn:
            if not self.is_sqlite:
                # Two replicas starting together would race on CREATE TABLE.
                await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"),
                                   {"k": _QUEUE_LOCK_KEY + 1})
            await conn.run_sync(metadata.create_all)

    async def close(self) -> None:
        if self.engine is not None:
            await self.engine.dispose()
            self.engine = None

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        """A write transaction (committed on exit, rolled back on an error)."""
        if self._write_lock is None:
            async with self.engine.begin() as conn:
                yield conn
            return
        async with self._write_lock, self.engine.begin() as conn:
            yield conn

    @contextlib.asynccontextmanager
    async def reading(self) -> AsyncIterator[AsyncConnection]:
        async with self.engine.connect() as conn:
            yield conn

    async def lock_counts(self, conn: AsyncConnection) -> None:
        """Hold every writer of ``generation_counts`` off until ``conn``'s transaction ends, and
        wait for those in flight (PostgreSQL; SQLite's write lock does it already)."""
        if not self.is_sqlite:
            await conn.execute(text("LOCK TABLE generation_counts IN EXCLUSIVE MODE"))

    async def lock_submissions(self, conn: AsyncConnection) -> None:
        """Serialise submissions until ``conn``'s transaction ends (PostgreSQL; SQLite's write
        lock does it already), so the queue bound and idempotency keys hold across replicas."""
        if not self.is_sqlite:
            await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _QUEUE_LOCK_KEY})

"""Every generation: its record in the database (orchestrator.database) and its files in
``DATA_DIR/generations/{id}/`` (the assets, and ``metadata.json``, a copy of the record kept
beside them so that a folder stays meaningful on its own).

The database row is the record and the commit point: the assets of a generation are written
into a staging directory under ``DATA_DIR/tmp/``, moved into the generation's directory, and
only then, in the same transaction that checked the job is still this replica's, does its row
say ``completed``. Readers serve assets only of a completed record, so a crash at any moment
never leaves a half generation that looks complete.

With SQLite one orchestrator process owns a data directory (an exclusive lock on
``DATA_DIR/.lock``): at its start every record still ``queued`` or ``running`` was left by a dead
process and becomes ``failed: interrupted``. With PostgreSQL any number of replicas share the
directory (a ReadWriteMany volume) and the database; a dead replica's jobs are found by their
expired leases instead (orchestrator.job_manager).

Generations written as ``metadata.json`` files only (by versions before the database, or copied
in by hand) are imported when the store opens: the folders whose id the database lacks are read,
the others are not, so a restart reads nothing it has already imported.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import shutil
import tempfile
import threading
import time
import zlib
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import delete, func, select, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection

from orchestrator import formats
from orchestrator.database import (
    Database,
    generation_counts,
    generations,
    job_events,
    jobs,
    resolve_url,
)
from orchestrator.enums import ACTIVE, Status
from orchestrator.records import GenerationRecord

log = logging.getLogger(__name__)

METADATA = "metadata.json"
# Files a completed generation has, in the order they are committed.
STORED_ASSETS = ("image.png", "depth.png", "segments.png", formats.CLOUD_FILE)
# Every file of a generation: the stored ones and those made from the cloud on request
# (orchestrator.formats).
ASSETS = STORED_ASSETS + formats.DERIVED_ASSETS
# Locks that serialise the first build of a cached asset: striped, so that their number stays
# bounded; two assets sharing a stripe only wait for each other's first build.
_BUILD_LOCK_STRIPES = 64
INTERRUPTED = "interrupted"
# Records imported from metadata.json files per transaction.
_IMPORT_BATCH = 500
# Shared data directory (PostgreSQL): another replica's staging directory is left alone unless
# it is older than any job runs.
_STALE_STAGING_S = 6 * 3600

_ID = re.compile(r"[0-9a-f]{32}")


def valid_id(generation_id: str) -> bool:
    return _ID.fullmatch(generation_id) is not None


class DataDirInUse(RuntimeError):
    pass


class LostJob(RuntimeError):
    """The job is no longer this replica's (its lease expired and another took it up)."""


class GenerationStore:
    def __init__(self, data_dir: Path, database_url: str = ""):
        self.data_dir = Path(data_dir)
        self.root = self.data_dir / "generations"
        self.tmp = self.data_dir / "tmp"
        self.db = Database(resolve_url(database_url, self.data_dir))
        self._lock_file = None
        self._build_locks = [threading.Lock() for _ in range(_BUILD_LOCK_STRIPES)]

    @property
    def exclusive(self) -> bool:
        """Whether this process is the only one using the data (SQLite)."""
        return self.db.is_sqlite

    # -- lifecycle --------------------------------------------------------------------------

    async def open(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.tmp.mkdir(parents=True, exist_ok=True)
        if self.exclusive:
            self._lock_file = _lock(self.data_dir)
        # Staging directories of generations that never committed: nothing refers to them.
        horizon = time.time() - _STALE_STAGING_S
        for leftover in self.tmp.iterdir():
            with contextlib.suppress(FileNotFoundError):
                if self.exclusive or leftover.stat().st_mtime < horizon:
                    shutil.rmtree(leftover, ignore_errors=True)
        try:
            await self.db.open()
            if await self.import_files() or not await self._counted():
                await self.recount()
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        await self.db.close()
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    async def import_files(self) -> int:
        """Import the generations the database lacks from their ``metadata.json`` (idempotent:
        a folder already imported is not read again). Returns how many were imported."""
        with os.scandir(self.root) as folders:
            on_disk = {folder.name for folder in folders if valid_id(folder.name)}
        if not on_disk:
            return 0
        async with self.db.reading() as conn:
            known = set((await conn.execute(select(generations.c.id))).scalars())
        missing = sorted(on_disk - known)
        imported = 0
        for start in range(0, len(missing), _IMPORT_BATCH):
            rows = []
            for generation_id in missing[start:start + _IMPORT_BATCH]:
                record = _read_file(self.root / generation_id / METADATA)
                if record is not None and record.id == generation_id:
                    rows.append(_row(record))
            if rows:
                insert = self.db.dialect_insert(generations).on_conflict_do_nothing()
                async with self.db.transaction() as conn:
                    await conn.execute(insert, rows)
                imported += len(rows)
        if imported:
            log.info("imported %d generation(s) from their metadata.json", imported)
        return imported

    async def _counted(self) -> bool:
        async with self.db.reading() as conn:
            return (await conn.execute(select(func.count()).select_from(generation_counts))
                    ).scalar_one() > 0

    async def recount(self) -> None:
        """Count the generations per status again (after an import, or a database written
        without the counts)."""
        async with self.db.transaction() as conn:
            await self.db.lock_counts(conn)
            rows = (await conn.execute(select(generations.c.status, func.count())
                                       .group_by(generations.c.status))).all()
            await conn.execute(delete(generation_counts))
            if rows:
                await conn.execute(generation_counts.insert(),
                                   [dict(status=status, n=n) for status, n in rows])

    async def _count(self, conn: AsyncConnection, status: str | None, delta: int) -> None:
        if status is None:
            return
        insert = self.db.dialect_insert(generation_counts).values(status=status, n=delta)
        await conn.execute(insert.on_conflict_do_update(
            index_elements=[generation_counts.c.status],
            set_={"n": generation_counts.c.n + delta}))

    async def recover_interrupted(self, now: str) -> list[GenerationRecord]:
        """Mark every record left queued or running by a previous process ``failed:
        interrupted`` and remove its partial files (SQLite: this process is the only one).
        Returns the records it changed."""
        async with self.db.reading() as conn:
            rows = (await conn.execute(select(generations.c.record).where(
                generations.c.status.in_([str(s) for s in ACTIVE])))).scalars().all()
        changed = []
        for raw in rows:
            record = GenerationRecord.from_json(raw.encode())
            changed.append(await self.interrupt(record, now))
        if changed:
            log.warning("marked %d interrupted generation(s) failed", len(changed))
        return changed

    async def interrupt(self, record: GenerationRecord, now: str,
                        conn: AsyncConnection | None = None) -> GenerationRecord:
        """``record``, whose process died, as ``failed: interrupted``, its partial files gone
        and its job row with it."""
        folder = self.root / record.id
        if folder.is_dir():
            for path in folder.iterdir():
                if path.name != METADATA:
                    if path.is_dir():
                        shutil.rmtree(path, ignore_errors=True)
                    else:
                        path.unlink(missing_ok=True)
        # Unknown which events the previous process sent: replay the end always.
        job = record.job.model_copy(update={"last_event_id": None})
        record = record.model_copy(update=dict(
            status=Status.FAILED, stage=None, error=INTERRUPTED, error_status=503,
            updated_at=now, finished_at=now, job=job))
        await self.write_record(record, conn=conn, end_job=True)
        return record

    # -- records ----------------------------------------------------------------------------

    def folder(self, generation_id: str) -> Path:
        if not valid_id(generation_id):
            raise ValueError(f"not a generation id: {generation_id!r}")
        return self.root / generation_id

    async def write_record(self, record: GenerationRecord, *, conn: AsyncConnection | None = None,
                           end_job: bool = False) -> None:
        """Store ``record`` (and its metadata.json copy); ``end_job``: its job row goes too."""
        self.folder(record.id)  # a valid id, before anything is written
        async with _maybe(self.db, conn) as c:
            await self.put_row(c, record)
            if end_job:
                await c.execute(delete(jobs).where(jobs.c.id == record.id))
        self.write_file(record)

    def write_file(self, record: GenerationRecord) -> None:
        """The record's metadata.json copy beside the assets."""
        folder = self.folder(record.id)
        folder.mkdir(exist_ok=True)
        _atomic_write(folder / METADATA, record.to_json())

    async def put_row(self, conn: AsyncConnection, record: GenerationRecord) -> None:
        row = _row(record)
        # The row locked: the status it had is the one the counts hold.
        old = (await conn.execute(select(generations.c.status).where(
            generations.c.id == record.id).with_for_update())).scalar_one_or_none()
        insert = self.db.dialect_insert(generations).values(row)
        await conn.execute(insert.on_conflict_do_update(
            index_elements=[generations.c.id],
            set_={k: v for k, v in row.items() if k != "id"}))
        if old != row["status"]:
            # In one order (by status) in every transaction: two writers never wait on each
            # other's count rows crosswise (a deadlock).
            for status, delta in sorted({old: -1, row["status"]: +1}.items(),
                                        key=lambda item: item[0] or ""):
                await self._count(conn, status, delta)

    async def read_record(self, generation_id: str) -> GenerationRecord | None:
        if not valid_id(generation_id):
            return None
        async with self.db.reading() as conn:
            raw = (await conn.execute(select(generations.c.record).where(
                generations.c.id == generation_id))).scalar_one_or_none()
        return _parse(generation_id, raw)

    async def page(self, limit: int, offset: int = 0, status: str | None = None,
                   after: tuple[str, str] | None = None) -> tuple[list[GenerationRecord], int]:
        """One page of records, newest first (optionally only those with ``status``), and
        how many there are in all. ``after``: the (created_at, id) of the last record of the
        previous page (keyset pagination: the database seeks to it in the index instead of
        counting ``offset`` rows)."""
        query = select(generations.c.id, generations.c.record)
        count = select(func.coalesce(func.sum(generation_counts.c.n), 0))
        if status is not None:
            query = query.where(generations.c.status == str(status))
            count = count.where(generation_counts.c.status == str(status))
        if after is not None:
            query = query.where(tuple_(generations.c.created_at, generations.c.id)
                                < tuple_(*after))
        query = query.order_by(generations.c.created_at.desc(), generations.c.id.desc())
        async with self.db.reading() as conn:
            rows = (await conn.execute(query.limit(limit).offset(offset))).all()
            total = (await conn.execute(count)).scalar_one()
        records = [r for r in (_parse(gid, raw) for gid, raw in rows) if r is not None]
        return records, total

    async def list_records(self) -> list[GenerationRecord]:
        """Every record, newest first (reads them all: for tools and tests, not requests)."""
        total = (await self.page(1))[1]
        return (await self.page(total or 1))[0]

    async def delete(self, generation_id: str) -> bool:
        if not valid_id(generation_id):
            return False
        async with self.db.transaction() as conn:
            status = (await conn.execute(select(generations.c.status).where(
                generations.c.id == generation_id).with_for_update())).scalar_one_or_none()
            gone = (await conn.execute(delete(generations).where(
                generations.c.id == generation_id))).rowcount
            if gone:
                await self._count(conn, status, -1)
            await conn.execute(delete(jobs).where(jobs.c.id == generation_id))
            await conn.execute(delete(job_events).where(job_events.c.job_id == generation_id))
        folder = self.root / generation_id
        if folder.is_dir():
            # One rename makes it disappear at once; the slow removal happens out of sight.
            doomed = Path(tempfile.mkdtemp(dir=self.tmp, prefix=f"deleted-{generation_id}-"))
            with contextlib.suppress(FileNotFoundError):
                folder.rename(doomed / generation_id)
            shutil.rmtree(doomed, ignore_errors=True)
            gone = True
        return bool(gone)

    # -- assets -----------------------------------------------------------------------------

    def staging(self, generation_id: str) -> Path:
        return Path(tempfile.mkdtemp(dir=self.tmp, prefix=f"staging-{generation_id}-"))

    def discard(self, staging: Path) -> None:
        shutil.rmtree(staging, ignore_errors=True)

    async def commit(self, staging: Path, record: GenerationRecord,
                     owner: str | None = None) -> None:
        """Move the staged assets into place and store the completed record, in one
        transaction that first checks (and locks) the job row as ``owner``'s: a replica whose
        lease was taken over commits nothing (:class:`LostJob`), and the one that took it over
        waits for the lock rather than seeing half the files. The job row goes with it."""
        folder = self.folder(record.id)
        moved: list[Path] = []
        try:
            async with self.db.transaction() as conn:
                if owner is not None:
                    holder = (await conn.execute(
                        select(jobs.c.owner).where(jobs.c.id == record.id).with_for_update(),
                    )).scalar_one_or_none()
                    if holder != owner:
                        raise LostJob(f"job {record.id} is no longer this replica's")
                folder.mkdir(exist_ok=True)
                for name in STORED_ASSETS:
                    os.replace(staging / name, folder / name)
                    moved.append(folder / name)
                _fsync_dir(folder)
                await self.put_row(conn, record)
                await conn.execute(delete(jobs).where(jobs.c.id == record.id))
        except BaseException:
            for path in moved:
                path.unlink(missing_ok=True)
            raise
        finally:
            self.discard(staging)
        _atomic_write(folder / METADATA, record.to_json())

    async def asset_path(self, generation_id: str, name: str) -> Path | None:
        """The stored file ``name`` of a completed generation, or None. Only names in the fixed
        set are ever joined to a path, so no request can reach outside the generation."""
        if name not in STORED_ASSETS:
            return None
        record = await self.read_record(generation_id)
        if record is None or record.status != Status.COMPLETED:
            return None
        path = self.root / generation_id / name
        return path if path.is_file() else None

    async def completed_cloud(self, generation_id: str
                              ) -> tuple[Path, GenerationRecord] | None:
        """The stored cloud of a completed generation and its record, or None."""
        record = await self.read_record(generation_id)
        if record is None or record.status != Status.COMPLETED:
            return None
        source = self.root / generation_id / formats.CLOUD_FILE
        return (source, record) if source.is_file() else None

    def derived_asset(self, generation_id: str, name: str, source: Path,
                      record: GenerationRecord,
                      build: Callable[[Path, GenerationRecord], bytes]) -> Path | None:
        """The cached file ``name`` beside a completed generation's stored cloud ``source``
        (:meth:`completed_cloud`), built on first use as ``build(source, record)``.

        Blocking (run it in a worker thread). Concurrent first requests build it once: the
        build runs under a lock and the file appears by an atomic rename, so no reader ever
        sees a half-written file; later requests find it and take no lock.
        """
        if name not in formats.CACHED_FILES:
            return None
        target = source.parent / name
        if target.is_file():
            return target
        stripe = zlib.crc32(f"{generation_id}/{name}".encode()) % _BUILD_LOCK_STRIPES
        with self._build_locks[stripe]:
            if target.is_file():
                return target
            data = build(source, record)
            try:
                _atomic_write(target, data)
            except FileNotFoundError:  # deleted meanwhile
                return None
        return target


def _lock(data_dir: Path):
    """The exclusive lock on ``data_dir/.lock`` (held while the returned file is open)."""
    lock = open(data_dir / ".lock", "a+")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        raise DataDirInUse(f"{data_dir.resolve()} is in use by another orchestrator process "
                           "(with SQLite; PostgreSQL lets several share it)") from None
    return lock


@contextlib.asynccontextmanager
async def _maybe(db: Database, conn: AsyncConnection | None):
    """``conn`` when the caller has a transaction open, else a transaction of its own."""
    if conn is not None:
        yield conn
        return
    async with db.transaction() as own:
        yield own


def _row(record: GenerationRecord) -> dict:
    return dict(id=record.id, status=str(record.status), created_at=record.created_at,
                idempotency_key=record.job.idempotency_key,
                fingerprint=record.job.fingerprint if record.job.idempotency_key else None,
                record=record.to_json().decode())


def _parse(generation_id: str, raw: str | None) -> GenerationRecord | None:
    if raw is None:
        return None
    try:
        return GenerationRecord.from_json(raw.encode())
    except ValueError as exc:  # ValidationError is a ValueError
        log.warning("unreadable record %s: %s", generation_id, exc)
        return None


def _read_file(path: Path) -> GenerationRecord | None:
    try:
        return GenerationRecord.from_json(path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning("unreadable record %s: %s", path.parent.name, exc)
        return None


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

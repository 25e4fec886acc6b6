"""The job rows and job events in the database (orchestrator.database): what replicas share of
the jobs they run. The job manager holds the live state; these are the statements it needs.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from orchestrator.database import Database, generations, job_events, jobs
from orchestrator.enums import Status
from orchestrator.flow import JobInputs
from orchestrator.jobs import JobEvent
from orchestrator.records import GenerationRecord

# Events of a job that ended (its row gone) are kept this long for clients of other replicas
# that are still reading them; after that a reconnect replays the end from the record.
EVENT_RETENTION_S = 600.0


@dataclass(frozen=True)
class NewJob:
    """A job row: who holds it, and what another replica needs to run it again (None: it
    cannot be, see ``jobs.resumable``)."""

    record: GenerationRecord
    owner: str
    lease_until: float
    inputs: JobInputs
    image: bytes | None = None
    resumable: bool = False


@dataclass(frozen=True)
class Takeover:
    """A job whose owner's lease expired, now this replica's."""

    record: GenerationRecord
    inputs: dict[str, Any]
    image: bytes | None
    events: list[JobEvent]


def inputs_json(inputs: JobInputs) -> str:
    """What a job's inputs are without the image and the key (those never go to the database
    as such: the key not at all, the image as the upload's bytes)."""
    return json.dumps(dict(source=str(inputs.source), mode=str(inputs.mode), prompt=inputs.prompt,
                           vibe=inputs.vibe, quality=str(inputs.quality),
                           output=str(inputs.output) if inputs.output else None,
                           edges=inputs.edges, exif_focal_px=inputs.exif_focal_px))


class JobRows:
    def __init__(self, db: Database):
        self.db = db

    # -- submission -------------------------------------------------------------------------

    async def find_key(self, conn: AsyncConnection, key: str,
                       created_after: str) -> tuple[str, str | None] | None:
        """The (id, fingerprint) of the newest generation submitted with ``key`` since then."""
        row = (await conn.execute(
            select(generations.c.id, generations.c.fingerprint)
            .where(generations.c.idempotency_key == key,
                   generations.c.created_at >= created_after)
            .order_by(generations.c.created_at.desc()).limit(1))).first()
        return (row[0], row[1]) if row is not None else None

    async def queued(self, conn: AsyncConnection, other_than: str) -> int:
        """The queued jobs of the replicas other than ``other_than`` (and of none)."""
        return (await conn.execute(select(func.count()).select_from(jobs).where(
            jobs.c.status == str(Status.QUEUED),
            (jobs.c.owner != other_than) | jobs.c.owner.is_(None)))).scalar_one()

    async def insert(self, conn: AsyncConnection, job: NewJob) -> None:
        await conn.execute(jobs.insert().values(
            id=job.record.id, status=str(Status.QUEUED), created_at=job.record.created_at,
            owner=job.owner, lease_until=job.lease_until, resumable=job.resumable,
            inputs=inputs_json(job.inputs) if job.resumable else None,
            image=job.image if job.resumable else None, attempts=0))

    # -- the running replica ----------------------------------------------------------------

    async def set_status(self, job_id: str, status: Status, conn: AsyncConnection) -> None:
        await conn.execute(update(jobs).where(jobs.c.id == job_id).values(status=str(status)))

    async def holds(self, conn: AsyncConnection, job_id: str, owner: str) -> bool:
        """Whether ``owner`` holds the job's row (locked until ``conn``'s transaction ends)."""
        holder = (await conn.execute(select(jobs.c.owner).where(jobs.c.id == job_id)
                                     .with_for_update())).scalar_one_or_none()
        return holder == owner

    async def end(self, job_id: str, conn: AsyncConnection) -> None:
        await conn.execute(delete(jobs).where(jobs.c.id == job_id))

    async def renew(self, owner: str, lease_until: float) -> set[str]:
        """Renew the leases of ``owner``'s jobs; the ids it still holds."""
        async with self.db.transaction() as conn:
            await conn.execute(update(jobs).where(jobs.c.owner == owner)
                               .values(lease_until=lease_until))
            return set((await conn.execute(select(jobs.c.id).where(jobs.c.owner == owner))
                        ).scalars())

    async def release(self, job_ids: list[str], owner: str) -> None:
        """Give up ``owner``'s jobs: queued again, their leases expired, for another replica to
        take up at its next heartbeat."""
        async with self.db.transaction() as conn:
            await conn.execute(update(jobs).where(jobs.c.id.in_(job_ids), jobs.c.owner == owner)
                               .values(owner=None, lease_until=0.0, status=str(Status.QUEUED)))

    async def cancel_requests(self, owner: str) -> dict[str, str]:
        """Cancellations other replicas asked for, of ``owner``'s jobs (each answered once)."""
        async with self.db.reading() as conn:
            rows = (await conn.execute(select(jobs.c.id, jobs.c.cancel_reason).where(
                jobs.c.owner == owner, jobs.c.cancel_reason.is_not(None)))).all()
        if not rows:
            return {}
        async with self.db.transaction() as conn:
            await conn.execute(update(jobs).where(jobs.c.id.in_([r[0] for r in rows]))
                               .values(cancel_reason=None))
        return {job_id: reason for job_id, reason in rows}

    async def request_cancel(self, job_id: str, reason: str) -> bool:
        async with self.db.transaction() as conn:
            return (await conn.execute(update(jobs).where(jobs.c.id == job_id)
                                       .values(cancel_reason=reason))).rowcount > 0

    async def counts(self) -> dict[Status, int]:
        async with self.db.reading() as conn:
            rows = (await conn.execute(select(jobs.c.status, func.count())
                                       .group_by(jobs.c.status))).all()
        return {Status(status): count for status, count in rows}

    # -- dead replicas ----------------------------------------------------------------------

    async def take_over(self, owner: str, now: float, lease_until: float, max_attempts: int,
                        interrupt: Callable[[AsyncConnection, GenerationRecord], Any],
                        limit: int = 8) -> list[Takeover]:
        """Jobs whose lease expired (their replica died or hangs): a resumable one becomes
        ``owner``'s, queued again with its inputs; any other is ended by ``interrupt`` (it
        cannot run anywhere else). Rows another replica is handling are skipped."""
        taken = []
        async with self.db.transaction() as conn:
            rows = (await conn.execute(
                select(jobs.c.id, jobs.c.resumable, jobs.c.attempts, jobs.c.inputs, jobs.c.image)
                .where(jobs.c.lease_until < now).order_by(jobs.c.created_at).limit(limit)
                .with_for_update(skip_locked=True))).all()
            for job_id, resumable, attempts, inputs, image in rows:
                raw = (await conn.execute(select(generations.c.record).where(
                    generations.c.id == job_id))).scalar_one_or_none()
                if raw is None:  # deleted meanwhile
                    await conn.execute(delete(jobs).where(jobs.c.id == job_id))
                    continue
                record = GenerationRecord.from_json(raw.encode())
                if not resumable or attempts + 1 >= max_attempts or inputs is None:
                    await interrupt(conn, record)
                    continue
                await conn.execute(update(jobs).where(jobs.c.id == job_id).values(
                    owner=owner, lease_until=lease_until, status=str(Status.QUEUED),
                    attempts=attempts + 1, cancel_reason=None))
                events = await self._events(conn, job_id, 0)
                taken.append(Takeover(record, json.loads(inputs), image, events))
        return taken

    async def take_queued(self, owner: str, lease_until: float, limit: int) -> list[Takeover]:
        """The oldest uploads waiting in other replicas' queues, now ``owner``'s (an idle
        replica helps a busy one). Their old owner finds out when it renews its leases, or when
        it tries to start one (:meth:`holds` under the row lock): it drops them then."""
        taken = []
        async with self.db.transaction() as conn:
            rows = (await conn.execute(
                select(jobs.c.id, jobs.c.inputs, jobs.c.image)
                .where(jobs.c.status == str(Status.QUEUED), jobs.c.resumable.is_(True),
                       jobs.c.inputs.is_not(None),
                       (jobs.c.owner != owner) | jobs.c.owner.is_(None))
                .order_by(jobs.c.created_at).limit(limit)
                .with_for_update(skip_locked=True))).all()
            for job_id, inputs, image in rows:
                raw = (await conn.execute(select(generations.c.record).where(
                    generations.c.id == job_id))).scalar_one_or_none()
                if raw is None:
                    continue
                await conn.execute(update(jobs).where(jobs.c.id == job_id).values(
                    owner=owner, lease_until=lease_until))
                events = await self._events(conn, job_id, 0)
                taken.append(Takeover(GenerationRecord.from_json(raw.encode()),
                                      json.loads(inputs), image, events))
        return taken

    # -- events -----------------------------------------------------------------------------

    async def add_events(self, batch: Sequence[tuple[str, JobEvent, float]]) -> None:
        rows = [dict(job_id=job_id, event_id=event.id, name=event.name,
                     data=json.dumps(event.data), created=created)
                for job_id, event, created in batch]
        insert = self.db.dialect_insert(job_events).on_conflict_do_nothing()
        async with self.db.transaction() as conn:
            await conn.execute(insert, rows)

    async def events_after(self, job_id: str, after: int) -> list[JobEvent]:
        async with self.db.reading() as conn:
            return await self._events(conn, job_id, after)

    async def last_event(self, job_id: str) -> JobEvent | None:
        async with self.db.reading() as conn:
            row = (await conn.execute(
                select(job_events.c.event_id, job_events.c.name, job_events.c.data)
                .where(job_events.c.job_id == job_id)
                .order_by(job_events.c.event_id.desc()).limit(1))).first()
        return JobEvent(row[0], row[1], json.loads(row[2])) if row is not None else None

    async def _events(self, conn: AsyncConnection, job_id: str, after: int) -> list[JobEvent]:
        rows = (await conn.execute(
            select(job_events.c.event_id, job_events.c.name, job_events.c.data)
            .where(job_events.c.job_id == job_id, job_events.c.event_id > after)
            .order_by(job_events.c.event_id))).all()
        return [JobEvent(event_id, name, json.loads(data)) for event_id, name, data in rows]

    async def prune_events(self, now: float) -> None:
        """Events of jobs that ended more than EVENT_RETENTION_S ago."""
        async with self.db.transaction() as conn:
            await conn.execute(delete(job_events).where(and_(
                job_events.c.created < now - EVENT_RETENTION_S,
                job_events.c.job_id.not_in(select(jobs.c.id)))))


def now_s() -> float:
    return time.time()

"""The job manager: a bounded FIFO queue, a fixed number of jobs running at once per replica,
cancellation, idempotent submission, restart safety, and the leases that let replicas share one
database (orchestrator.database).

Both ``POST /jobs`` and the synchronous ``POST /generate`` go through :class:`JobManager`, so
there is one queue, one concurrency limit and one record format (orchestrator.records). The
jobs themselves, their progress and events are in orchestrator.jobs.

Several replicas: a job is queued by the replica that accepted it, which holds it in memory (its
inputs, the key of a prompt) and owns its row in the database under a lease it renews; an idle
replica takes the uploads waiting in busy replicas' queues (row locks, SKIP LOCKED). The
queue bound is global: a submission counts the queued rows of every replica under a lock. What
another replica needs to serve the job, it reads from the database: the record, the events (for
Server-Sent Events and ``Last-Event-ID`` on any replica), and a cancellation is written there
for the owner to act on. A replica that dies stops renewing: once its leases expire another
replica takes its jobs up again, an upload (whose bytes are in the row) running again from the
start under the same id, a prompt (whose key was only in the dead replica's memory) or a
``/generate`` (whose client was connected there) ending ``failed: interrupted``. The commit
checks the lease under a row lock, so a job taken over is stored once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import socket
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from uuid import uuid4

from orchestrator import tracing
from orchestrator.enums import ACTIVE, TERMINAL, Source, Status
from orchestrator.errors import INTERNAL_DETAIL, ApiError, QueueFull
from orchestrator.flow import JobInputs, Outcome, Progress
from orchestrator.job_rows import JobRows, NewJob, Takeover
from orchestrator.jobs import MAX_EVENTS_PER_JOB, Job, JobEvent, utcnow
from orchestrator.limits import pixel_cap
from orchestrator.metrics import Metrics
from orchestrator.records import GenerationRecord, JobView
from orchestrator.settings import Settings
from orchestrator.storage import INTERRUPTED, GenerationStore, LostJob
from scene_rpc.images import decode_image_bytes

log = logging.getLogger(__name__)

# The pipeline (orchestrator.pipeline.Pipeline): a generation's id, its inputs and where to
# report progress in; what it made out.
Runner = Callable[[str, JobInputs, Progress], Awaitable[Outcome]]
# A job taken up again after its replica died runs at most this many times in all: a job that
# kills whatever runs it must not go round the replicas forever.
MAX_ATTEMPTS = 3
# The cancellation reason of a job whose lease another replica took over.
HANDED_OVER = "handed over to another replica"


class JobManager:
    def __init__(self, settings: Settings, store: GenerationStore, runner: Runner,
                 metrics: Metrics | None = None):
        self.settings = settings
        self.metrics = metrics
        self.store = store
        self.runner = runner
        self.rows = JobRows(store.db)
        # This process, as the owner of job rows.
        self.replica = f"{socket.gethostname()}-{os.getpid()}-{uuid4().hex[:8]}"
        self._jobs: dict[str, Job] = {}
        self._queue: deque[Job] = deque()
        self._running: dict[str, Job] = {}
        self._finished: deque[str] = deque()
        self._duration_ema_s: float | None = None
        # The other replicas' queued jobs, as last counted (the sync capacity pre-check).
        self._queued_elsewhere = 0
        self._closing = False
        self._event_queue: asyncio.Queue[tuple[str, JobEvent, float]] = asyncio.Queue()
        self._tasks: list[asyncio.Task] = []
        # Ends of queued jobs under way (cancelled ones): waited for at shutdown.
        self._ending: set[asyncio.Future] = set()

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Restart safety: with SQLite (one process) what a previous process left queued or
        running failed; with PostgreSQL other replicas' jobs are theirs until their leases
        expire (the heartbeat takes them over then)."""
        if self.store.exclusive:
            await self.store.recover_interrupted(utcnow())
        self._tasks = [asyncio.create_task(self._write_events(), name="job-events"),
                       asyncio.create_task(self._heartbeat(), name="job-heartbeat")]

    async def close(self) -> None:
        """Shutdown. With PostgreSQL, the uploads this replica holds are handed to the other
        replicas (their leases released: one takes each up at once); every other job, and
        every job with SQLite, ends ``failed: interrupted`` now rather than when its lease
        expires or at the next start."""
        self._closing = True
        if not self.store.exclusive:
            await self._release_resumable()
        while self._queue:
            await self._end(self._queue.popleft(), Status.FAILED, INTERRUPTED, 503)
        running = list(self._running.values())
        for job in running:
            if not job.committing:
                job.cancel_reason = INTERRUPTED
                job.task.cancel()
        await asyncio.gather(*(job.task for job in running), return_exceptions=True)
        await asyncio.gather(*self._ending, return_exceptions=True)
        # The last events reach the database before the connection closes.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._event_queue.join(), 5)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # -- submission -------------------------------------------------------------------------

    async def find_idempotent(self, key: str, fingerprint: str | None) -> JobView | None:
        """The job an earlier submission with ``key`` started, or None."""
        async with self.store.db.reading() as conn:
            found = await self.rows.find_key(conn, key, self._key_horizon())
        return await self._replay(found, fingerprint)

    async def _replay(self, found: tuple[str, str | None] | None,
                      fingerprint: str | None) -> JobView | None:
        if found is None:
            return None
        job_id, known_fingerprint = found
        if known_fingerprint != fingerprint:
            raise ApiError(422, "this Idempotency-Key was used for a different request")
        return await self.view(job_id)

    def _key_horizon(self) -> str:
        horizon = datetime.now(UTC) - timedelta(seconds=self.settings.idempotency_ttl_s)
        return horizon.isoformat(timespec="microseconds").replace("+00:00", "Z")

    def check_capacity(self) -> None:
        """A quick check before a request's body is read (the count of the other replicas'
        queued jobs is the last one seen); :meth:`submit` checks again under the lock."""
        if self._closing:
            raise ApiError(503, "the server is shutting down", headers={"Retry-After": "10"})
        self._admit(len(self._queue) + self._queued_elsewhere)

    def _admit(self, queued: int) -> None:
        if (len(self._running) >= self.settings.max_concurrent_jobs
                and queued >= self.settings.max_queued_jobs):
            if self.metrics is not None:
                self.metrics.queue_full()
            raise QueueFull(self.retry_after_s(), queued)

    def retry_after_s(self) -> int:
        """A guess of when a queue slot frees up, from recent job durations."""
        if self._duration_ema_s is None:
            return 10
        waves = (len(self._queue) + 1) / self.settings.max_concurrent_jobs
        return int(min(max(math.ceil(self._duration_ema_s * waves), 1), 3600))

    async def submit(self, inputs: JobInputs, *, idempotency_key: str | None = None,
                     fingerprint: str | None = None,
                     image: bytes | None = None) -> tuple[JobView, bool]:
        """Queue a job. Returns (its view, True) or, for a repeated idempotency key, (the
        earlier job's view, False). Raises QueueFull when the queue is full. ``image``: the
        upload's bytes, kept for another replica to run the job if this one dies."""
        if self._closing:
            raise ApiError(503, "the server is shutting down", headers={"Retry-After": "10"})
        # An upload to /jobs can run anywhere (PostgreSQL: its bytes are kept in its row; with
        # SQLite there is nowhere else to run it, so they are not written); a prompt's key stays
        # in this process, and a /generate request waits here.
        resumable = (not self.store.exclusive and inputs.source == Source.UPLOAD
                     and inputs.output is None and image is not None)
        job = found = None
        async with self.store.db.transaction() as conn:
            await self.store.db.lock_submissions(conn)
            if idempotency_key is not None:
                found = await self.rows.find_key(conn, idempotency_key, self._key_horizon())
            if found is None:
                # This replica's queue from memory (its rows' status may lag behind).
                self._queued_elsewhere = await self.rows.queued(conn, self.replica)
                self._admit(len(self._queue) + self._queued_elsewhere)
                job = Job(inputs, idempotency_key=idempotency_key, fingerprint=fingerprint)
                job.resumable = resumable
                job.queue_position = len(self._queue) + 1
                record = job.record()
                try:
                    await self.store.put_row(conn, record)
                    await self.rows.insert(conn, NewJob(
                        record, self.replica, self._lease_until(), inputs, image, resumable))
                except BaseException:
                    tracing.end_generation(job.span, Status.FAILED, "not stored")
                    raise
        if found is not None:
            return await self._replay(found, fingerprint), False
        self.store.write_file(job.record())
        self._enqueue(job)
        return job.view(), True

    def _enqueue(self, job: Job) -> None:
        job.on_event = self._store_event
        self._jobs[job.id] = job
        self._queue.append(job)
        job.queue_position = len(self._queue)
        job.emit("queued")
        if self._closing:  # shutdown began while it was being stored
            self._queue.remove(job)
            job.status = Status.FAILED
            self._track(self._end(job, Status.FAILED, INTERRUPTED, 503))
            return
        log.info("job %s queued (%s, %s, quality=%s) at position %d", job.id, job.source,
                 job.mode, job.quality,
                 job.queue_position)
        self._dispatch()

    def get(self, job_id: str) -> Job | None:
        return self._jobs.get(job_id)

    async def view(self, job_id: str) -> JobView | None:
        job = self._jobs.get(job_id)
        if job is not None and not job.handed_over:
            return job.view()
        record = await self.store.read_record(job_id)
        return await self._view_of(record) if record is not None else None

    async def _view_of(self, record: GenerationRecord) -> JobView:
        """The view of a job this replica does not hold: a live one (another replica runs it)
        as its last event showed it, a finished one from its record."""
        if record.status in ACTIVE:
            last = await self.rows.last_event(record.id)
            if last is not None and last.name not in TERMINAL:
                return JobView.model_validate(last.data)
        return JobView.from_record(record)

    async def list(self, limit: int) -> list[JobView]:
        """Recent jobs, newest first: the records with the live state of those in memory."""
        records, _ = await self.store.page(limit)
        items = []
        for record in records:
            job = self._jobs.get(record.id)
            if job is not None and not job.handed_over:
                items.append(job.view())
            else:
                items.append(await self._view_of(record))
        return items

    @property
    def stats(self) -> dict[str, int]:
        """This replica's jobs."""
        return {"running": len(self._running), "queued": len(self._queue),
                "max_concurrent_jobs": self.settings.max_concurrent_jobs,
                "max_queued_jobs": self.settings.max_queued_jobs}

    async def all_stats(self) -> dict[str, int]:
        """Every replica's jobs (one replica: the same as :attr:`stats`)."""
        counts = await self.rows.counts()
        return {**self.stats, "running": counts.get(Status.RUNNING, 0),
                "queued": counts.get(Status.QUEUED, 0)}

    # -- cancellation and waiting -----------------------------------------------------------

    def request_cancel(self, job_id: str, reason: str) -> Job | None:
        """Cancel a job of this replica without waiting: a queued one ends at once, a running
        one has its task (and with it its gRPC calls) cancelled. A finished job is left as
        it is."""
        job = self._jobs.get(job_id)
        if job is None or job.terminal or job.handed_over:
            return job
        if job.status == Status.QUEUED:
            self._queue.remove(job)
            job.status = Status.CANCELLED  # at once: nothing starts it meanwhile
            self._track(self._end(job, Status.CANCELLED, reason, None))
            self._renumber_queue()
        elif job.task is not None and job.cancel_reason is None and not job.committing:
            job.cancel_reason = reason
            job.task.cancel()
        return job

    async def cancel(self, job_id: str, reason: str = "cancelled by the client",
                     wait_s: float = 10.0) -> JobView | None:
        """Cancel a job, this replica's (:meth:`request_cancel`) or another's (asked through
        the database), then wait up to ``wait_s`` for it to end."""
        job = self.request_cancel(job_id, reason)
        if job is not None and not job.handed_over:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(job.done.wait(), wait_s)
            return job.view()
        record = await self.store.read_record(job_id)
        if record is None:
            return None
        if record.status in ACTIVE and await self.rows.request_cancel(job_id, reason):
            deadline = time.monotonic() + wait_s
            # Polling: the owner acts on it at its next heartbeat and writes the record.
            while record is not None and record.status in ACTIVE \
                    and time.monotonic() < deadline:
                await asyncio.sleep(self.settings.job_poll_s)
                record = await self.store.read_record(job_id)
        return await self.view(job_id)

    async def wait(self, job_id: str) -> JobView | None:
        """Wait for a job of this replica to end; its final view (None for an unknown id)."""
        job = self._jobs.get(job_id)
        if job is not None:
            await job.done.wait()
        return await self.view(job_id)

    async def events(self, job_id: str, after: int) -> AsyncIterator[JobEvent]:
        """A job's events after ``after``, live until its end: from memory when this replica
        runs it, else from the database. A finished job no longer in memory (it ended before a
        restart, or long ago, or elsewhere) replays its end from its record."""
        job = self._jobs.get(job_id)
        if job is not None:
            async for event in job.follow(after):
                after = event.id
                yield event
            if not job.handed_over:
                return
        while True:
            record = await self.store.read_record(job_id)
            if record is None:
                return
            if record.status in TERMINAL:
                last_id = record.job.last_event_id
                if last_id is not None and after >= last_id:
                    return
                # After a restart the ids the previous process sent are unknown: the end gets
                # an id above any it could have used.
                event_id = last_id if last_id is not None else max(after + 1,
                                                                   MAX_EVENTS_PER_JOB + 10)
                yield JobEvent(event_id, record.status,
                               JobView.from_record(record).model_dump(mode="json"))
                return
            for event in await self.rows.events_after(job_id, after):
                after = event.id
                yield event
                if event.name in TERMINAL:
                    return
            # Polling the job's events: another replica writes them (at most JOB_POLL_S late).
            await asyncio.sleep(self.settings.job_poll_s)

    # -- running ----------------------------------------------------------------------------

    def _dispatch(self) -> None:
        started = False
        while self._queue and len(self._running) < self.settings.max_concurrent_jobs \
                and not self._closing:
            job = self._queue.popleft()
            started = True
            job.status = Status.RUNNING
            job.queue_position = None
            job.started_at = utcnow()
            job._started_clock = time.perf_counter()
            job.record_timing("queue", job._started_clock - job._created_clock)
            job.emit("started")
            self._running[job.id] = job
            job.task = asyncio.create_task(self._run(job), name=f"job-{job.id}",
                                           context=tracing.task_context(job.span))
        if started:
            self._renumber_queue()

    def _renumber_queue(self) -> None:
        for position, job in enumerate(self._queue, start=1):
            if job.queue_position != position:
                job.queue_position = position
                job.emit("queued")

    async def _run(self, job: Job) -> None:
        try:
            # Not waited for: the runner starts now, in the order jobs were dispatched; the
            # job's next save waits for this one.
            self._save_soon(job, job.record(), running=True)
            outcome = await self.runner(job.id, job.inputs, job)
        except asyncio.CancelledError:
            if job.cancel_reason == HANDED_OVER:
                self._hand_over(job)
            elif job.cancel_reason == INTERRUPTED:
                await self._end(job, Status.FAILED, INTERRUPTED, 503)
            else:
                await self._end(job, Status.CANCELLED, job.cancel_reason or "cancelled", None)
        except ApiError as exc:
            await self._end(job, Status.FAILED, exc.detail, exc.status)
        except Exception:
            # A bug, not the client's fault: its text stays in the log, the client gets the
            # generic answer every unexpected error gets.
            log.exception("job %s failed unexpectedly", job.id)
            await self._end(job, Status.FAILED, INTERNAL_DETAIL, 500)
        else:
            await self._complete(job, outcome)
        finally:
            self._running.pop(job.id, None)
            self._dispatch()

    async def _complete(self, job: Job, outcome: Outcome) -> None:
        # From here a cancellation no longer applies (request_cancel and close leave a
        # committing job alone), and the commit itself is shielded: it lands whole or not.
        job.committing = True
        self._finish_timing(job)
        finished = utcnow()
        # The completed event will carry the next id; the record names it for replays.
        record = job.record(last_event_id=job.next_event_id, result=outcome.result,
                            status=Status.COMPLETED, stage=None, progress=1.0,
                            updated_at=finished, finished_at=finished)
        try:
            if job._saving is not None:  # the "running" record lands first, not over this one
                await _shielded(asyncio.gather(job._saving, return_exceptions=True))
            await _shielded(self.store.commit(outcome.staging, record, owner=self.replica))
        except LostJob:
            log.warning("job %s: its lease was taken over; its result is not stored here",
                        job.id)
            self._hand_over(job)
            return
        except Exception as exc:
            log.exception("job %s: storing the generation failed", job.id)
            self.store.discard(outcome.staging)
            job.committing = False
            await self._end(job, Status.FAILED, f"could not store the generation: {exc}", 500)
            return
        job.result = outcome.result
        job.progress = 1.0
        job.stage = None
        job.status = Status.COMPLETED
        job.updated_at = job.finished_at = finished
        job.body = outcome.body
        if self.metrics is not None:
            self.metrics.job_finished(job)
        self._record_duration(job)
        job.emit(Status.COMPLETED)
        log.info("job %s completed in %.0f ms", job.id, job.timing_ms.get("total", 0))
        self._retire(job)

    async def _end(self, job: Job, status: Status, error: str, error_status: int | None) -> None:
        """Finish a job without a generation: failed or cancelled, with a record saying so."""
        key = job.inputs.openai_api_key
        if key:
            error = error.replace(key, "[redacted]")
        job.status = status
        job.error = error
        job.error_status = error_status
        job.queue_position = None
        job.finished_at = job.updated_at = utcnow()
        self._finish_timing(job)
        if self.metrics is not None:
            self.metrics.job_finished(job)
        # Stored before it is announced: whoever sees the end can read the record.
        await self._save(job, job.record(last_event_id=job.next_event_id), end=True)
        job.emit(status)
        log.info("job %s %s: %s", job.id, status, error)
        self._retire(job)

    async def _save(self, job: Job, record: GenerationRecord, *, end: bool = False) -> None:
        """Store the job's record (and its row's status), shielded from the job's own
        cancellation and in order: a save waits for the job's previous one."""
        await _shielded(self._save_soon(job, record, end=end))

    def _save_soon(self, job: Job, record: GenerationRecord, *, running: bool = False,
                   end: bool = False) -> asyncio.Future:
        """:meth:`_save`, started now and not waited for."""
        previous = job._saving

        async def save() -> None:
            if previous is not None:
                await asyncio.gather(previous, return_exceptions=True)
            try:
                async with self.store.db.transaction() as conn:
                    if not await self.rows.holds(conn, job.id, self.replica):
                        # Deleted meanwhile, or taken over: writing would bring it back.
                        log.info("job %s: no longer this replica's; its %s is not stored",
                                 job.id, record.status)
                        if running and job.task is not None and not job.committing:
                            # Another replica took it from the queue as it started here.
                            job.cancel_reason = HANDED_OVER
                            job.task.cancel()
                        return
                    await self.store.put_row(conn, record)
                    if running:
                        await self.rows.set_status(job.id, Status.RUNNING, conn)
                    if end:
                        await self.rows.end(job.id, conn)
                self.store.write_file(record)
            except Exception:
                log.exception("job %s: writing its record failed", job.id)

        job._saving = asyncio.ensure_future(save())
        return job._saving

    def _finish_timing(self, job: Job) -> None:
        job.record_timing("total", time.perf_counter() - job._created_clock)

    def _record_duration(self, job: Job) -> None:
        if job._started_clock is None:
            return
        seconds = time.perf_counter() - job._started_clock
        ema = self._duration_ema_s
        self._duration_ema_s = seconds if ema is None else 0.7 * ema + 0.3 * seconds

    def _retire(self, job: Job) -> None:
        tracing.end_generation(job.span, job.status, job.error)
        job.inputs = job.inputs.without_payload()  # the image and the key are not needed now
        job.done.set()
        self._finished.append(job.id)
        while len(self._finished) > self.settings.job_history:
            old = self._jobs.get(self._finished[0])
            # A /generate request may still be reading its job's body: keep that one a while.
            if old is not None and old.body is not None:
                break
            self._jobs.pop(self._finished.popleft(), None)

    def _hand_over(self, job: Job) -> None:
        """Another replica took the job over: drop it here without a word to the database
        (its followers here go on reading it from there)."""
        job.handed_over = True
        with contextlib.suppress(ValueError):
            self._queue.remove(job)
        self._jobs.pop(job.id, None)
        tracing.end_generation(job.span, job.status, HANDED_OVER)
        job.inputs = job.inputs.without_payload()
        job.done.set()
        job.wake()

    def release_body(self, job: Job) -> bytes | None:
        body, job.body = job.body, None
        return body

    def forget(self, job_id: str) -> None:
        """Drop a deleted generation's job from memory."""
        self._jobs.pop(job_id, None)
        with contextlib.suppress(ValueError):
            self._finished.remove(job_id)

    # -- what replicas share ----------------------------------------------------------------

    def _lease_until(self) -> float:
        return time.time() + self.settings.job_lease_s

    def _store_event(self, job_id: str, event: JobEvent) -> None:
        self._event_queue.put_nowait((job_id, event, time.time()))

    async def _write_events(self) -> None:
        """Store the jobs' events in batches (one transaction for all that are waiting)."""
        while True:
            batch = [await self._event_queue.get()]
            while not self._event_queue.empty():
                batch.append(self._event_queue.get_nowait())
            try:
                await self.rows.add_events(batch)
            except Exception:
                # Only other replicas' clients read them; this one's follow the memory.
                log.exception("storing %d job event(s) failed", len(batch))
            finally:
                for _ in batch:
                    self._event_queue.task_done()

    async def _heartbeat(self) -> None:
        """Every JOB_POLL_S: act on cancellations other replicas asked for. Every third of
        JOB_LEASE_S: renew this replica's leases, notice a job another replica took over, take
        up the jobs of replicas whose leases expired, prune old events."""
        poll_s = self.settings.job_poll_s
        lease_every = max(self.settings.job_lease_s / 3, poll_s)
        next_lease = 0.0
        while True:
            try:
                for job_id, reason in (await self.rows.cancel_requests(self.replica)).items():
                    self.request_cancel(job_id, reason)
                await self._help_others()
                if time.monotonic() >= next_lease:
                    next_lease = time.monotonic() + lease_every
                    await self._renew_and_take_over()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("job heartbeat failed (retrying)")
            await asyncio.sleep(poll_s)

    async def _renew_and_take_over(self) -> None:
        # Only jobs this replica held before the renewal: one submitted meanwhile may be missing
        # from what the renewal read.
        before = [*self._queue, *self._running.values()]
        held = await self.rows.renew(self.replica, self._lease_until())
        for job in before:
            if job.id not in held and not job.terminal and not job.committing \
                    and not job.handed_over:
                log.warning("job %s: this replica's lease on it was lost", job.id)
                if job.task is not None:
                    job.cancel_reason = HANDED_OVER
                    job.task.cancel()
                else:
                    self._hand_over(job)
        if self._closing:
            return
        now = time.time()

        async def interrupt(conn, record: GenerationRecord) -> None:
            log.warning("job %s: its replica is gone; it cannot run elsewhere", record.id)
            await self.store.interrupt(record, utcnow(), conn=conn)

        taken = await self.rows.take_over(self.replica, now, self._lease_until(), MAX_ATTEMPTS,
                                          interrupt)
        for takeover in taken:
            log.warning("job %s: taken over from a replica that stopped renewing its lease",
                        takeover.record.id)
            await self._resume(takeover)
        async with self.store.db.reading() as conn:
            self._queued_elsewhere = await self.rows.queued(conn, self.replica)
        await self.rows.prune_events(now)

    async def _help_others(self) -> None:
        """An idle replica takes the oldest uploads queued at busy ones (PostgreSQL)."""
        free = self.settings.max_concurrent_jobs - len(self._running)
        if self.store.exclusive or self._closing or self._queue or free <= 0:
            return
        for takeover in await self.rows.take_queued(self.replica, self._lease_until(), free):
            log.info("job %s: taken from another replica's queue", takeover.record.id)
            await self._resume(takeover)

    async def _resume(self, takeover: Takeover) -> None:
        """Queue again, here, a job whose replica died (an upload: its bytes are stored)."""
        record, fields = takeover.record, takeover.inputs
        try:
            rgb = await asyncio.to_thread(decode_image_bytes, takeover.image,
                                          max_pixels=pixel_cap(0))
        except Exception:
            log.exception("job %s: its stored upload cannot be decoded", record.id)
            await self.store.interrupt(record, utcnow())
            return
        inputs = JobInputs(source=fields["source"], mode=fields["mode"], prompt=fields["prompt"],
                           vibe=fields["vibe"], rgb=rgb, quality=fields["quality"],
                           output=fields["output"], edges=fields["edges"],
                           exif_focal_px=fields["exif_focal_px"])
        job = Job(inputs, idempotency_key=record.job.idempotency_key,
                  fingerprint=record.job.fingerprint, job_id=record.id,
                  created_at=record.created_at, events=takeover.events)
        job.resumable = True
        await self._save(job, job.record())
        self._enqueue(job)

    async def _release_resumable(self) -> None:
        handed = [job for job in [*self._queue, *self._running.values()]
                  if job.resumable and not job.committing and not job.terminal]
        for job in handed:
            if job.task is None:
                self._hand_over(job)
            else:
                job.cancel_reason = HANDED_OVER
                job.task.cancel()
        await asyncio.gather(*(job.task for job in handed if job.task is not None),
                             return_exceptions=True)
        if handed:
            try:
                await self.rows.release([job.id for job in handed], self.replica)
                log.info("handed %d job(s) to the other replicas", len(handed))
            except Exception:
                # Their leases expire instead: taken up a little later.
                log.exception("releasing %d job(s) failed", len(handed))

    def _track(self, coroutine: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._ending.add(task)
        task.add_done_callback(self._ending.discard)


async def _shielded(awaitable: Awaitable) -> None:
    """Await ``awaitable`` to its end even if the caller is cancelled meanwhile (then raise
    the cancellation after it)."""
    future = asyncio.ensure_future(awaitable)
    try:
        await asyncio.shield(future)
    except asyncio.CancelledError:
        while not future.done():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(future)
        raise


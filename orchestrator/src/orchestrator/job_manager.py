"""The job manager: one bounded FIFO queue, a fixed number of jobs running at once,
cancellation, idempotent submission and restart safety.

Both ``POST /jobs`` and the synchronous ``POST /generate`` go through :class:`JobManager`, so
there is one queue, one concurrency limit and one record format (orchestrator.records). The
jobs themselves, their progress and events are in orchestrator.jobs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime

from orchestrator import tracing
from orchestrator.enums import TERMINAL, Status
from orchestrator.errors import INTERNAL_DETAIL, ApiError, QueueFull
from orchestrator.flow import JobInputs, Outcome, Progress
from orchestrator.jobs import MAX_EVENTS_PER_JOB, Job, JobEvent, utcnow
from orchestrator.metrics import Metrics
from orchestrator.records import JobView
from orchestrator.settings import Settings
from orchestrator.storage import INTERRUPTED, GenerationStore

log = logging.getLogger(__name__)

# The pipeline (orchestrator.pipeline.Pipeline): a generation's id, its inputs and where to
# report progress in; what it made out.
Runner = Callable[[str, JobInputs, Progress], Awaitable[Outcome]]


class JobManager:
    def __init__(self, settings: Settings, store: GenerationStore, runner: Runner,
                 metrics: Metrics | None = None):
        self.settings = settings
        self.metrics = metrics
        self.store = store
        self.runner = runner
        self._jobs: dict[str, Job] = {}
        self._queue: deque[Job] = deque()
        self._running: dict[str, Job] = {}
        self._finished: deque[str] = deque()
        self._idempotency: dict[str, tuple[str, str | None, float]] = {}
        self._duration_ema_s: float | None = None
        self._closing = False

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        """Restart safety: what a previous process left queued or running failed; keys of
        recent submissions keep answering with their job."""
        self.store.recover_interrupted(utcnow())
        horizon = time.time() - self.settings.idempotency_ttl_s
        for entry in self.store.index.entries():
            key = entry.idempotency_key
            created = _timestamp(entry.created_at) if key else 0.0
            if key and created >= horizon:
                self._idempotency[key] = (entry.id, entry.fingerprint, created)

    async def close(self) -> None:
        """Shutdown: nothing queued or running survives the process, so each ends ``failed:
        interrupted`` now rather than at the next start."""
        self._closing = True
        while self._queue:
            self._end(self._queue.popleft(), Status.FAILED, INTERRUPTED, 503)
        running = list(self._running.values())
        for job in running:
            job.cancel_reason = INTERRUPTED
            job.task.cancel()
        await asyncio.gather(*(job.task for job in running), return_exceptions=True)

    # -- submission -------------------------------------------------------------------------

    def find_idempotent(self, key: str, fingerprint: str | None) -> JobView | None:
        """The job an earlier submission with ``key`` started, or None."""
        entry = self._idempotency.get(key)
        if entry is None:
            return None
        job_id, known_fingerprint, created = entry
        if created < time.time() - self.settings.idempotency_ttl_s:
            del self._idempotency[key]
            return None
        if known_fingerprint != fingerprint:
            raise ApiError(422, "this Idempotency-Key was used for a different request")
        return self.view(job_id)

    def check_capacity(self) -> None:
        if self._closing:
            raise ApiError(503, "the server is shutting down", headers={"Retry-After": "10"})
        if (len(self._running) >= self.settings.max_concurrent_jobs
                and len(self._queue) >= self.settings.max_queued_jobs):
            if self.metrics is not None:
                self.metrics.queue_full()
            raise QueueFull(self.retry_after_s(), len(self._queue))

    def retry_after_s(self) -> int:
        """A guess of when a queue slot frees up, from recent job durations."""
        if self._duration_ema_s is None:
            return 10
        waves = (len(self._queue) + 1) / self.settings.max_concurrent_jobs
        return int(min(max(math.ceil(self._duration_ema_s * waves), 1), 3600))

    def submit(self, inputs: JobInputs, *, idempotency_key: str | None = None,
               fingerprint: str | None = None) -> tuple[JobView, bool]:
        """Queue a job. Returns (its view, True) or, for a repeated idempotency key, (the
        earlier job's view, False). Raises QueueFull when the queue is full."""
        if idempotency_key is not None:
            existing = self.find_idempotent(idempotency_key, fingerprint)
            if existing is not None:
                return existing, False
        self.check_capacity()
        job = Job(inputs, idempotency_key=idempotency_key, fingerprint=fingerprint)
        self._jobs[job.id] = job
        self._queue.append(job)
        job.queue_position = len(self._queue)
        self.store.write_record(job.record())
        if idempotency_key is not None:
            self._idempotency[idempotency_key] = (job.id, fingerprint, time.time())
        job.emit("queued")
        log.info("job %s queued (%s, %s, quality=%s) at position %d", job.id, job.source,
                 job.mode, job.quality,
                 job.queue_position)
        self._dispatch()
        return job.view(), True

    def get(self, job_id: str) -> Job | None:
        return self._jobs.get(job_id)

    def view(self, job_id: str) -> JobView | None:
        job = self._jobs.get(job_id)
        if job is not None:
            return job.view()
        record = self.store.read_record(job_id)
        return JobView.from_record(record) if record is not None else None

    async def list(self, limit: int) -> list[JobView]:
        """Recent jobs, newest first: the records (read in a thread) with the live state of
        those still in memory (read here, on the loop that changes it)."""
        records, _ = await asyncio.to_thread(self.store.page, limit)
        items = []
        for record in records:
            job = self._jobs.get(record.id)
            items.append(job.view() if job is not None else JobView.from_record(record))
        return items

    @property
    def stats(self) -> dict[str, int]:
        return {"running": len(self._running), "queued": len(self._queue),
                "max_concurrent_jobs": self.settings.max_concurrent_jobs,
                "max_queued_jobs": self.settings.max_queued_jobs}

    # -- cancellation and waiting -----------------------------------------------------------

    def request_cancel(self, job_id: str, reason: str) -> Job | None:
        """Cancel a job without waiting: a queued one ends at once, a running one has its task
        (and with it its gRPC calls) cancelled. A finished job is left as it is."""
        job = self._jobs.get(job_id)
        if job is None or job.terminal:
            return job
        if job.status == Status.QUEUED:
            self._queue.remove(job)
            self._end(job, Status.CANCELLED, reason, None)
            self._renumber_queue()
        elif job.task is not None and job.cancel_reason is None:
            job.cancel_reason = reason
            job.task.cancel()
        return job

    async def cancel(self, job_id: str, reason: str = "cancelled by the client",
                     wait_s: float = 10.0) -> JobView | None:
        """:meth:`request_cancel`, then wait up to ``wait_s`` for the job to end."""
        job = self.request_cancel(job_id, reason)
        if job is None:
            return self.view(job_id)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(job.done.wait(), wait_s)
        return job.view()

    async def wait(self, job_id: str) -> JobView | None:
        """Wait for a job to end; its final view (None for an unknown id)."""
        job = self._jobs.get(job_id)
        if job is not None:
            await job.done.wait()
        return self.view(job_id)

    async def events(self, job_id: str, after: int) -> AsyncIterator[JobEvent]:
        """A job's events after ``after``, live until its end. A job no longer in memory (it
        ended before a restart, or long ago) replays its end from its record."""
        job = self._jobs.get(job_id)
        if job is not None:
            async for event in job.follow(after):
                yield event
            return
        record = self.store.read_record(job_id)
        if record is None or record.status not in TERMINAL:
            return
        last_id = record.job.last_event_id
        if last_id is not None and after >= last_id:
            return
        # After a restart the ids the previous process sent are unknown: the end gets an id
        # above any it could have used.
        event_id = last_id if last_id is not None else max(after + 1, MAX_EVENTS_PER_JOB + 10)
        yield JobEvent(event_id, record.status,
                       JobView.from_record(record).model_dump(mode="json"))

    # -- running ----------------------------------------------------------------------------

    def _dispatch(self) -> None:
        started = False
        while self._queue and len(self._running) < self.settings.max_concurrent_jobs:
            job = self._queue.popleft()
            started = True
            job.status = Status.RUNNING
            job.queue_position = None
            job.started_at = utcnow()
            job._started_clock = time.perf_counter()
            job.record_timing("queue", job._started_clock - job._created_clock)
            self.store.write_record(job.record())
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
            outcome = await self.runner(job.id, job.inputs, job)
        except asyncio.CancelledError:
            if job.cancel_reason == INTERRUPTED:
                self._end(job, Status.FAILED, INTERRUPTED, 503)
            else:
                self._end(job, Status.CANCELLED, job.cancel_reason or "cancelled", None)
        except ApiError as exc:
            self._end(job, Status.FAILED, exc.detail, exc.status)
        except Exception:
            # A bug, not the client's fault: its text stays in the log, the client gets the
            # generic answer every unexpected error gets.
            log.exception("job %s failed unexpectedly", job.id)
            self._end(job, Status.FAILED, INTERNAL_DETAIL, 500)
        else:
            self._complete(job, outcome)
        finally:
            self._running.pop(job.id, None)
            self._dispatch()

    def _complete(self, job: Job, outcome: Outcome) -> None:
        # No await from here on: a cancellation cannot land between the commit and the state,
        # and nobody sees the state between "completed" here and a failed commit below.
        job.result = outcome.result
        job.progress = 1.0
        job.stage = None
        self._finish_timing(job)
        job.status = Status.COMPLETED
        job.updated_at = job.finished_at = utcnow()
        try:
            # The completed event will carry the next id; the record names it for replays.
            record = job.record(last_event_id=len(job.events) + 1)
            self.store.commit(outcome.staging, record)
        except Exception as exc:
            log.exception("job %s: storing the generation failed", job.id)
            self.store.discard(outcome.staging)
            # What could not be stored is not shown either (and may be what failed).
            job.result = None
            self._end(job, Status.FAILED, f"could not store the generation: {exc}", 500)
            return
        job.body = outcome.body
        if self.metrics is not None:
            self.metrics.job_finished(job)
        self._record_duration(job)
        job.emit(Status.COMPLETED)
        log.info("job %s completed in %.0f ms", job.id, job.timing_ms.get("total", 0))
        self._retire(job)

    def _end(self, job: Job, status: Status, error: str, error_status: int | None) -> None:
        """Finish a job without a generation: failed or cancelled, with a record saying so."""
        key = job.inputs.openai_api_key
        if key:
            error = error.replace(key, "[redacted]")
        job.status = status
        job.error = error
        job.error_status = error_status
        job.queue_position = None
        job.finished_at = utcnow()
        self._finish_timing(job)
        if self.metrics is not None:
            self.metrics.job_finished(job)
        try:
            job.updated_at = job.finished_at
            record = job.record(last_event_id=len(job.events) + 1)
            self.store.write_record(record)
        except Exception:
            log.exception("job %s: writing its record failed", job.id)
        job.emit(status)
        log.info("job %s %s: %s", job.id, status, error)
        self._retire(job)

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

    def release_body(self, job: Job) -> bytes | None:
        body, job.body = job.body, None
        return body

    def forget(self, job_id: str) -> None:
        """Drop a deleted generation's job from memory."""
        self._jobs.pop(job_id, None)
        with contextlib.suppress(ValueError):
            self._finished.remove(job_id)
        for key, (known_id, _, _) in list(self._idempotency.items()):
            if known_id == job_id:
                del self._idempotency[key]


def _timestamp(iso: str | None) -> float:
    if not iso:
        return 0.0
    try:
        return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0

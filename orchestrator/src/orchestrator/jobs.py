"""A generation job: its inputs, live state, progress and event log for Server-Sent Events.

A job's id is its generation's id, and its state is persisted in the generation's record
(orchestrator.records, in the database and ``metadata.json``) at every status change; its events
go to the database too (``on_event``), for clients of other replicas. The queue that runs jobs
is orchestrator.job_manager.
"""

from __future__ import annotations

import asyncio
import bisect
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

from orchestrator import tracing
from orchestrator.enums import TERMINAL, Mode, Quality, Source, Status
from orchestrator.flow import JobInputs
from orchestrator.records import (
    GenerationRecord,
    GenerationResult,
    JobBookkeeping,
    JobLinks,
    JobView,
)

# Events kept per job for replay; beyond it only stage changes and the end are kept, so a
# chatty service cannot grow a job's log without bound.
MAX_EVENTS_PER_JOB = 1000
# Share of the overall progress each phase covers (prompt jobs generate an image first).
PROMPT_PLAN = {"imagegen": (0.0, 0.3), "models": (0.3, 0.9), "pointcloud": (0.9, 0.97),
               "storage": (0.97, 1.0)}
UPLOAD_PLAN = {"models": (0.0, 0.85), "pointcloud": (0.85, 0.95), "storage": (0.95, 1.0)}
MODEL_STAGES = ("depth", "segment")
# Progress events are sent when the overall fraction moved by at least this much.
PROGRESS_STEP = 0.01


def utcnow() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


@dataclass
class JobEvent:
    id: int
    name: str
    data: dict[str, Any]


class Job:
    """One job's state: the only copy. Its view (:meth:`view`) and its stored record
    (:meth:`record`) are both derived from it, in :meth:`_shown`."""

    def __init__(self, inputs: JobInputs, *, idempotency_key: str | None = None,
                 fingerprint: str | None = None, job_id: str | None = None,
                 created_at: str | None = None, events: list[JobEvent] | None = None):
        """A new job; or, with ``job_id``, ``created_at`` and the ``events`` it already sent,
        one another replica started and this one takes up again."""
        now = utcnow()
        self.id = job_id or uuid4().hex
        # The request; its image and key are dropped when the job ends.
        self.inputs = inputs
        self.status = Status.QUEUED
        self.stage: str | None = None
        self.progress = 0.0
        self.stages: dict[str, float] = {}
        self.queue_position: int | None = None
        self.timing_ms: dict[str, float] = {}
        self.error: str | None = None
        self.error_status: int | None = None
        self.created_at = created_at or now
        self.updated_at = now
        self.started_at: str | None = None
        self.finished_at: str | None = None
        self.idempotency_key = idempotency_key
        self.fingerprint = fingerprint
        # What the pipeline made, once it has (orchestrator.flow.Outcome).
        self.result: GenerationResult | None = None
        self.body: bytes | None = None
        self.events: list[JobEvent] = list(events or [])
        # Called with each new event (the job manager stores it for other replicas).
        self.on_event: Callable[[str, JobEvent], None] | None = None
        self.task: asyncio.Task | None = None
        self.cancel_reason: str | None = None
        # Set while the job's result is being committed: a cancellation no longer applies.
        self.committing = False
        # Another replica took the job over (this one lost its lease): nothing more of it here.
        self.handed_over = False
        # Whether another replica can run it (its inputs are in the database: an upload).
        self.resumable = False
        # The job manager's last write of the record (the next one waits for it).
        self._saving: asyncio.Future | None = None
        self.done = asyncio.Event()
        self._changed = asyncio.Event()
        self._created_clock = time.perf_counter()
        self._started_clock: float | None = None
        self._reported_progress = 0.0
        self._plan = PROMPT_PLAN if inputs.source == Source.PROMPT else UPLOAD_PLAN
        self.span, self.trace_id = tracing.start_generation(self.id, inputs.source, inputs.mode)

    @property
    def source(self) -> Source:
        return self.inputs.source

    @property
    def mode(self) -> Mode:
        return self.inputs.mode

    @property
    def quality(self) -> Quality:
        return self.inputs.quality

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    # -- what the API shows and what is stored ----------------------------------------------

    def _shown(self) -> dict[str, Any]:
        """The fields the view and the record share (never the inputs' image or key)."""
        inputs = self.inputs
        return dict(
            id=self.id, status=self.status, stage=self.stage, progress=round(self.progress, 4),
            timing_ms=dict(self.timing_ms), error=self.error, error_status=self.error_status,
            created_at=self.created_at, updated_at=self.updated_at, started_at=self.started_at,
            finished_at=self.finished_at, prompt=inputs.prompt, vibe=inputs.vibe,
            mode=inputs.mode, source=inputs.source, quality=inputs.quality)

    def view(self) -> JobView:
        return JobView(**self._shown(), queue_position=self.queue_position,
                       stages={k: round(v, 4) for k, v in self.stages.items()},
                       **JobLinks.of(self.id).model_dump())

    @property
    def next_event_id(self) -> int:
        return self.events[-1].id + 1 if self.events else 1

    def record(self, *, last_event_id: int | None = None,
               result: GenerationResult | None = None, **state: Any) -> GenerationRecord:
        """The generation's record. ``last_event_id``: the id of the event the record
        announces (default: the last one sent); ``result`` and ``state``: what the record says
        beyond the job's present state (the completed record before the job shows it)."""
        result = result if result is not None else self.result
        return GenerationRecord(
            **{**self._shown(), **state}, **(dict(result) if result is not None else {}),
            trace_id=self.trace_id,
            job=JobBookkeeping(idempotency_key=self.idempotency_key,
                               fingerprint=self.fingerprint,
                               last_event_id=last_event_id or
                               (self.events[-1].id if self.events else None)))

    # -- progress reported by the pipeline --------------------------------------------------

    def record_timing(self, step: str, seconds: float) -> None:
        self.timing_ms[step] = round(seconds * 1000, 3)

    def enter_stage(self, stage: str) -> None:
        self.stage = stage
        phase = "models" if stage in MODEL_STAGES else stage
        self.progress = max(self.progress, self._plan[phase][0])
        self.stages.setdefault(stage, 0.0)
        self.emit("stage")

    def stage_progress(self, stage: str, fraction: float) -> None:
        fraction = min(max(float(fraction), 0.0), 1.0)
        self.stages[stage] = max(self.stages.get(stage, 0.0), fraction)
        if stage in MODEL_STAGES:
            done = sum(self.stages.get(s, 0.0) for s in MODEL_STAGES) / len(MODEL_STAGES)
            start, end = self._plan["models"]
            if self.stage in MODEL_STAGES and self.stages.get(self.stage, 0.0) >= 1.0:
                # Name the stage still being waited for.
                waiting = [s for s in MODEL_STAGES if self.stages.get(s, 0.0) < 1.0]
                if waiting:
                    self.stage = waiting[0]
                    self.emit("stage")
        else:
            done = fraction
            start, end = self._plan[stage]
        self.progress = max(self.progress, start + (end - start) * done)
        if self.progress - self._reported_progress >= PROGRESS_STEP or fraction >= 1.0:
            self.emit("progress")

    # -- events -----------------------------------------------------------------------------

    def emit(self, name: str) -> None:
        self.updated_at = utcnow()
        if name == "progress":
            self._reported_progress = self.progress
            if len(self.events) >= MAX_EVENTS_PER_JOB:
                return
        event = JobEvent(self.next_event_id, name, self.view().model_dump(mode="json"))
        self.events.append(event)
        if self.on_event is not None:
            self.on_event(self.id, event)
        self.wake()

    def wake(self) -> None:
        """Wake every subscriber; later ones wait on a fresh event."""
        self._changed.set()
        self._changed = asyncio.Event()

    async def follow(self, after: int) -> AsyncIterator[JobEvent]:
        """Events with an id above ``after``, live, until the terminal one (or until the job
        is handed over to another replica: the caller follows it there)."""
        while True:
            changed = self._changed
            # Ids are increasing, and contiguous unless a replica that died lost some.
            start = bisect.bisect_right(self.events, after, key=lambda e: e.id)
            for event in self.events[start:]:
                after = event.id
                yield event
                if event.name in TERMINAL:
                    return
            if self.handed_over or (self.terminal and after >= self.next_event_id - 1):
                return
            await changed.wait()

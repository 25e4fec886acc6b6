"""``/jobs``: asynchronous generations with live progress as Server-Sent Events."""

from __future__ import annotations

import json
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import JSONResponse
from sse_starlette import EventSourceResponse, ServerSentEvent

from orchestrator.errors import ApiError
from orchestrator.records import JobAccepted, JobList, JobView
from orchestrator.runtime import JobIdDep, RuntimeDep
from orchestrator.submission import OPENAPI_BODY, decode_upload, read_submission

router = APIRouter(prefix="/jobs", tags=["jobs"])


def _not_found() -> ApiError:
    return ApiError(404, "no job with this id")


@router.post(
    "",
    status_code=202,
    summary="Submit a generation",
    response_model=JobAccepted,
    openapi_extra=OPENAPI_BODY,
    responses={202: {"description": "Queued: follow `events_url`, poll `status_url`; the result "
                                    "is at `result_url` once completed."},
               401: {"description": "No OpenAI key for a prompt."},
               413: {"description": "The upload is over the byte or pixel limit."},
               422: {"description": "A field is invalid, or the Idempotency-Key was used for "
                                    "another request."},
               429: {"description": "The queue is full (see Retry-After)."}},
)
async def submit_job(
    request: Request,
    runtime: RuntimeDep,
    idempotency_key: Annotated[str | None, Header(
        min_length=1, max_length=255, pattern=r"^[\x21-\x7e]+$",
        description="Retrying with the same key returns the same job instead of a new one.",
    )] = None,
) -> JSONResponse:
    """The inputs of `POST /generate` (JSON with a prompt, or a multipart upload), queued."""
    submission = await read_submission(request, runtime.settings)
    if idempotency_key is not None:
        existing = await runtime.jobs.find_idempotent(idempotency_key, submission.fingerprint)
        if existing is not None:
            return _accepted(existing, replayed=True)
    runtime.jobs.check_capacity()
    # The upload as sent: another replica decodes it again if it has to run the job.
    upload = submission.image_bytes
    if upload is not None:
        await decode_upload(submission)
    view, created = await runtime.jobs.submit(
        submission.inputs, idempotency_key=idempotency_key, fingerprint=submission.fingerprint,
        image=upload)
    return _accepted(view, replayed=not created)


def _accepted(view: JobView, *, replayed: bool) -> JSONResponse:
    body = JobAccepted.model_validate(view.model_dump()).model_dump()
    headers = {"Location": view.status_url}
    if replayed:
        headers["Idempotent-Replayed"] = "true"
    return JSONResponse(body, status_code=202, headers=headers)


@router.get("", summary="Recent jobs, newest first", response_model=JobList)
async def list_jobs(runtime: RuntimeDep,
                    limit: Annotated[int, Query(ge=1, le=500)] = 50) -> JobList:
    return JobList(items=await runtime.jobs.list(limit), **await runtime.jobs.all_stats())


@router.get("/{id}", summary="A job's state", response_model=JobView)
async def get_job(job_id: JobIdDep, runtime: RuntimeDep) -> JobView:
    """`{status, stage, progress, queue_position, timing_ms, error, ...}`. Statuses: queued,
    running, completed, failed, cancelled. `queue_position` 1 is the next to start."""
    view = await runtime.jobs.view(job_id)
    if view is None:
        raise _not_found()
    return view


# One event of the stream (the schema of each event, as OpenAPI tools read text/event-stream).
SSE_EVENT_SCHEMA = {
    "type": "object",
    "required": ["event", "id", "data"],
    "properties": {
        "event": {"type": "string", "enum": ["queued", "started", "stage", "progress",
                                             "completed", "failed", "cancelled"]},
        "id": {"type": "string", "pattern": "^[0-9]+$"},
        "data": {"type": "string", "contentMediaType": "application/json",
                 "description": "The job's state (the GET /jobs/{id} answer) as JSON."},
    },
}


@router.get(
    "/{id}/events",
    summary="A job's progress as Server-Sent Events",
    response_class=EventSourceResponse,
    responses={200: {"content": {"text/event-stream": {"schema": SSE_EVENT_SCHEMA}},
                     "description": "Events `queued`, `started`, `stage`, `progress`, then one of "
                                    "`completed`, `failed`, `cancelled`, each with an `id` and the "
                                    "job's state as JSON `data`. Ends after the terminal event."}},
)
async def job_events(
    job_id: JobIdDep,
    runtime: RuntimeDep,
    last_event_id: Annotated[str | None, Header(
        description="Resume after this event (browsers send it when they reconnect).")] = None,
    after: Annotated[int | None, Query(
        ge=0, description="The same as Last-Event-ID, for clients that cannot set headers.",
    )] = None,
) -> EventSourceResponse:
    if await runtime.jobs.view(job_id) is None:
        raise _not_found()
    start = after if after is not None else _event_id(last_event_id)

    async def stream():
        async for event in runtime.jobs.events(job_id, start):
            yield ServerSentEvent(data=json.dumps(event.data), event=event.name, id=str(event.id))

    return EventSourceResponse(stream(), ping=runtime.settings.sse_ping_s)


def _event_id(header: str | None) -> int:
    try:
        return max(int(header), 0) if header else 0
    except ValueError:
        return 0


@router.post("/{id}/cancel", summary="Cancel a job", response_model=JobView)
async def cancel_job(job_id: JobIdDep, runtime: RuntimeDep) -> JobView:
    """A queued job is cancelled at once; a running one has its model calls cancelled and ends
    `cancelled` with nothing stored. A finished job is left as it is."""
    view = await runtime.jobs.cancel(job_id)
    if view is None:
        raise _not_found()
    return view


@router.delete("/{id}", summary="Cancel a job (the same as POST /jobs/{id}/cancel)",
               response_model=JobView)
async def delete_job(job_id: JobIdDep, runtime: RuntimeDep) -> JobView:
    return await cancel_job(job_id, runtime)

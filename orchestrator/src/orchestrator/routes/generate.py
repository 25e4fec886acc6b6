"""``POST /generate``: the whole pipeline in one request, answered with the point cloud.

It is a job like any other (same queue, same record); the request just waits for it, and a
client that hangs up cancels it.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import replace
from typing import Annotated, Literal

from fastapi import APIRouter, Header, Query, Request, Response
from starlette.types import Receive

from orchestrator import formats
from orchestrator.enums import Geometry, Status
from orchestrator.errors import ApiError
from orchestrator.jobs import Job
from orchestrator.runtime import RuntimeDep
from orchestrator.submission import OPENAPI_BODY, decode_upload, read_submission

router = APIRouter(tags=["generate"])

# ?format=: the formats the registry says /generate answers with.
GenerateFormat = Literal[tuple(str(name) for name in formats.GENERATE_FORMATS)]  # type: ignore[valid-type]
# The OpenAPI schema of a binary answer.
BINARY = {"type": "string", "format": "binary"}
TIMING_ORDER = ("queue", "imagegen", "decode", "depth", "segment", "models", "pointcloud",
                "descriptors", "requantize", "png", "storage", "total", "glb")


def server_timing(timing_ms: dict[str, float]) -> str:
    steps = [s for s in TIMING_ORDER if s in timing_ms]
    steps += sorted(set(timing_ms) - set(steps))
    return ", ".join(f"{step};dur={timing_ms[step]:.1f}" for step in steps)


async def until_disconnected(receive: Receive) -> None:
    """Returns when the client hangs up (the body has been read, so nothing else arrives)."""
    while (await receive())["type"] != "http.disconnect":
        pass


@router.post(
    "/generate",
    summary="Generate a point cloud and wait for it",
    openapi_extra=OPENAPI_BODY,
    response_class=Response,
    responses={
        200: {"description": "The point cloud in the pointcloud-lib v1 binary format (or, with "
                             "`format=glb`, as glTF 2.0 binary).",
              "content": {formats.FORMATS[name].media_type: {"schema": BINARY}
                          for name in formats.GENERATE_FORMATS}},
        400: {"description": "An unusable upload, or a prompt OpenAI refused."},
        401: {"description": "No OpenAI key for a prompt, or OpenAI rejected it."},
        409: {"description": "The generation was cancelled (POST /jobs/{id}/cancel)."},
        413: {"description": "The upload is over the byte or pixel limit."},
        422: {"description": "A field is invalid."},
        429: {"description": "The queue is full (see Retry-After), or OpenAI's rate limit."},
        503: {"description": "A model service is down (named in the detail)."},
        504: {"description": "A model service passed its deadline."},
    },
)
async def generate(
    request: Request,
    runtime: RuntimeDep,
    format: Annotated[GenerateFormat | None, Query(
        description="`quantized` for the smaller quantised variant of the format, `grid` for "
                    "the grid variant (PCLD version 2, about 1 byte a point); `glb` for glTF 2.0 "
                    "binary (also `Accept: model/gltf-binary`).")] = None,
    geometry: Annotated[Geometry, Query(
        description="With `format=glb`: `mesh` for the triangles of the depth grid instead of "
                    "the points.")] = Geometry.POINTS,
    accept: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> Response:
    """Runs the whole pipeline: imagegen (prompts only), depth and segmentation, the point cloud
    and storage. Send JSON with a `prompt` (and an OpenAI key), or a multipart upload with an
    `image`. The answer carries `X-Generation-Id` (the stored generation) and `Server-Timing`."""
    output = formats.negotiate(format, accept)
    refusal = formats.geometry_refusal(f"format={output}", formats.FORMATS[output], geometry)
    if refusal is not None:
        raise ApiError(400, refusal)
    runtime.jobs.check_capacity()
    submission = await read_submission(request, runtime.settings)
    if submission.image_bytes is not None:
        await decode_upload(submission)
    inputs = replace(submission.inputs, output=output, geometry=geometry)
    view, _ = await runtime.jobs.submit(inputs, fingerprint=submission.fingerprint)
    job = runtime.jobs.get(view.id)
    await _wait(runtime, job, request.receive)
    headers = {"X-Generation-Id": job.id, "Server-Timing": server_timing(job.timing_ms),
               "Location": f"/generations/{job.id}"}
    if job.status == Status.COMPLETED:
        body = runtime.jobs.release_body(job)
        return Response(body, media_type=formats.FORMATS[output].media_type, headers=headers)
    if job.status == Status.FAILED:
        error_headers = {"X-Generation-Id": job.id}
        if job.error_status == 503:
            # A service restarting, or this server shutting down: worth retrying shortly.
            error_headers["Retry-After"] = "10"
        raise ApiError(job.error_status or 500, job.error or "the generation failed",
                       headers=error_headers)
    raise ApiError(409, f"the generation was cancelled: {job.error}",
                   headers={"X-Generation-Id": job.id})


async def _wait(runtime, job: Job, receive: Receive) -> None:
    done = asyncio.ensure_future(job.done.wait())
    hangup = asyncio.ensure_future(until_disconnected(receive))
    try:
        await asyncio.wait({done, hangup}, return_when=asyncio.FIRST_COMPLETED)
        if not done.done():
            await runtime.jobs.cancel(job.id, "the client disconnected")
    finally:
        # Also when this request is itself cancelled: the job must not outlive its client.
        if not job.terminal:
            runtime.jobs.request_cancel(job.id, "the client disconnected")
        for task in (done, hangup):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

"""One trace per generation (when tracing is on, see ``scene_rpc.tracing``).

A job's ``generation`` span starts when it is submitted, as a child of the HTTP request's span,
and ends with the job. The job's task runs inside it, so the gRPC calls it makes (and, through
their metadata, the services' spans) and every log line it writes carry its trace id, which is
also written into the generation's metadata.json. The task is given that context explicitly: it
is created by whichever request or finishing job frees a slot, whose context is someone else's.
"""

from __future__ import annotations

import contextvars
from typing import Any

from scene_rpc import tracing

TRACER_NAME = "orchestrator"


def start_generation(job_id: str, source: str, mode: str) -> tuple[Any, str | None]:
    """(span, trace id in hex); (None, None) with tracing off."""
    if not tracing.enabled():
        return None, None
    from opentelemetry import trace

    # The id is an attribute, never a metric label: spans are per generation by design.
    span = trace.get_tracer(TRACER_NAME).start_span(
        "generation", attributes={"generation.id": job_id, "generation.source": source,
                                  "generation.mode": mode})
    return span, format(span.get_span_context().trace_id, "032x")


def task_context(span: Any) -> contextvars.Context | None:
    """A context in which ``span`` is the current span, for the job's task; None = default."""
    if span is None:
        return None
    from opentelemetry import context, trace

    ctx = contextvars.copy_context()
    ctx.run(context.attach, trace.set_span_in_context(span))
    return ctx


def end_generation(span: Any, status: str, error: str | None) -> None:
    if span is None:
        return
    from opentelemetry.trace import Status, StatusCode

    span.set_attribute("generation.status", status)
    if status == "failed":
        span.set_status(Status(StatusCode.ERROR, error or "failed"))
    span.end()

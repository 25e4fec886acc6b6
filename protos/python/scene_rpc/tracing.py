"""Optional OpenTelemetry tracing, off unless a process calls :func:`configure_tracing` with an
exporter; the same setup in all four processes.

With it on, the gRPC instrumentation's interceptors carry the W3C ``traceparent`` in each call's
metadata (client side: the orchestrator's channels; server side: ``scene_rpc.server``), so a
generation's spans in every process share one trace id, and :class:`TraceIdFilter` writes that id
into each log line emitted inside a span. With it off nothing is imported or installed, and log
lines are exactly as before.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

log = logging.getLogger(__name__)

_enabled = False


def configure_tracing(service_name: str, exporter: str) -> bool:
    """``exporter``: empty = off; ``console`` = each finished span as one JSON line on stdout
    (for tests); anything else = the base URL of an OTLP/HTTP collector (``/v1/traces`` is
    appended unless given). Returns whether tracing is on. Call once per process, at start."""
    global _enabled
    if not exporter or _enabled:
        return _enabled
    from opentelemetry import trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        ConsoleSpanExporter,
        SimpleSpanProcessor,
    )

    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    if exporter == "console":
        # One line per span, written as it ends: a test reads them back from the process log.
        console = ConsoleSpanExporter(out=sys.stdout,
                                      formatter=lambda span: span.to_json(indent=None) + "\n")
        provider.add_span_processor(SimpleSpanProcessor(console))
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        endpoint = exporter.rstrip("/")
        if not endpoint.endswith("/v1/traces"):
            endpoint += "/v1/traces"
        # Batched, in the SDK's own thread: exporting never waits on a request.
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    trace.set_tracer_provider(provider)
    _enabled = True
    log.info("tracing on: %s", "console" if exporter == "console" else endpoint)
    return True


def enabled() -> bool:
    return _enabled


def server_interceptors() -> list[Any]:
    """The gRPC instrumentation's server interceptor (it reads ``traceparent``), when tracing."""
    if not _enabled:
        return []
    from opentelemetry.instrumentation.grpc import aio_server_interceptor

    return [aio_server_interceptor()]


def client_interceptors() -> list[Any] | None:
    """The gRPC instrumentation's client interceptors (they send ``traceparent``), when tracing."""
    if not _enabled:
        return None
    from opentelemetry.instrumentation.grpc import aio_client_interceptors

    return aio_client_interceptors()


def current_trace_id() -> str | None:
    """The current span's trace id in hex, or None outside a recorded trace."""
    if not _enabled:
        return None
    from opentelemetry import trace

    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else None


class TraceIdFilter(logging.Filter):
    """Gives every record a ``trace`` attribute: `` trace=<id>`` inside a span, else empty."""

    def filter(self, record: logging.LogRecord) -> bool:
        trace_id = current_trace_id()
        record.trace = f" trace={trace_id}" if trace_id else ""
        return True

"""Prometheus metrics every model service shares: per-method latency and status codes from one
server interceptor, model load state and load time from the shared model lifecycle, and the time
and count of the passes a service reports as progress.

The metrics live in prometheus-client's process-wide default registry: each service is its own
process, and the lifecycle and progress hooks sit in code that has no handle on a server object.
They are served on a small HTTP port of their own (``serve_metrics``), from prometheus-client's
own server thread, so a scrape never waits for the event loop or an inference thread and never
takes a lock of theirs. Label values are bounded: method names, status code names, model roles,
load states and pass names come from code, never from a request.
"""

from __future__ import annotations

import logging
import threading
import time

import grpc
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Enum, Gauge, Histogram
from prometheus_client import start_http_server as _start_http_server

log = logging.getLogger(__name__)

# From health probes (milliseconds) to CPU inference of a large image (minutes).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                   120.0, 300.0, 600.0)
PASS_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                120.0)
LOAD_STATES = ("unloaded", "loading", "loaded", "failed")

GRPC_HANDLING_SECONDS = Histogram(
    "scene_grpc_server_handling_seconds",
    "Time from a call's arrival to its last response message, by method and status code.",
    ["method", "code"], buckets=LATENCY_BUCKETS,
)
GRPC_HANDLED = Counter(
    "scene_grpc_server_handled_total", "Calls finished, by method and status code.",
    ["method", "code"],
)
GRPC_IN_FLIGHT = Gauge("scene_grpc_server_in_flight", "Calls being handled now.", ["method"])
MODEL_STATE = Enum(
    "scene_model_state", "Load state of each model of the service, by role.", ["role"],
    states=list(LOAD_STATES),
)
MODEL_LOAD_SECONDS = Gauge(
    "scene_model_load_seconds", "Duration of the last successful load, by model role.", ["role"],
)
MODEL_LOAD_FAILURES = Counter(
    "scene_model_load_failures_total", "Failed load attempts, by model role.", ["role"],
)
PASS_SECONDS = Histogram(
    "scene_inference_pass_seconds",
    "Time of one reported inference pass (depth: the global pass, a batch of tiles; segment: "
    "the semantic pass, a SAM2 image embedding, a batch of point prompts, fusion).",
    ["stage"], buckets=PASS_BUCKETS,
)
PASS_ITEMS = Counter(
    "scene_inference_items_total",
    "Work items processed, by pass (tiles, crops, prompt batches, ...).", ["stage"],
)


def serve_metrics(port: int, address: str = "", registry: CollectorRegistry = REGISTRY) -> int:
    """Serve ``/metrics`` on ``port`` (0 = off) from a daemon thread; returns the bound port."""
    if port <= 0:
        return 0
    server, _ = _start_http_server(port, addr=address or "0.0.0.0", registry=registry)
    bound = server.server_address[1]
    log.info("metrics on http://%s:%d/metrics", address or "0.0.0.0", bound)
    return bound


# -- the server interceptor -------------------------------------------------------------------

def _short_method(full_method: str) -> str:
    # "/scene.depth.v1.DepthService/EstimateDepth" -> "DepthService/EstimateDepth"
    service, _, method = full_method.lstrip("/").rpartition("/")
    return f"{service.rpartition('.')[2]}/{method}"


def _code_of(context, exc: BaseException | None) -> str:
    if isinstance(exc, BaseException) and not isinstance(exc, grpc.aio.AbortError):
        # Cancelled by the client (or the server stopping); anything else is mapped by the
        # error interceptor inside this one and arrives here as an AbortError.
        return "CANCELLED"
    code = context.code()
    if code is None:
        return "OK"
    if isinstance(code, grpc.StatusCode):
        return code.name
    # grpc.aio reports an int before Python turned it into a StatusCode.
    for known in grpc.StatusCode:
        if known.value[0] == code:
            return known.name
    return "UNKNOWN"


class MetricsInterceptor(grpc.aio.ServerInterceptor):
    """Latency and status code of every call. Runs outside the error-mapping interceptor, so it
    sees the status a client receives."""

    def __init__(self, skip: tuple[str, ...] = ("/grpc.health.v1.Health/",
                                                "/grpc.reflection.")) -> None:
        # Health probes every few seconds would drown the model methods' numbers.
        self._skip = skip

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        full = handler_call_details.method
        if handler is None or full.startswith(self._skip):
            return handler
        method = _short_method(full)
        in_flight = GRPC_IN_FLIGHT.labels(method)

        def finish(started: float, context, exc: BaseException | None) -> None:
            code = _code_of(context, exc)
            GRPC_HANDLING_SECONDS.labels(method, code).observe(time.perf_counter() - started)
            GRPC_HANDLED.labels(method, code).inc()
            in_flight.dec()

        if handler.unary_unary is not None:
            behavior = handler.unary_unary

            async def unary_unary(request, context):
                started = time.perf_counter()
                in_flight.inc()
                try:
                    response = await behavior(request, context)
                except BaseException as exc:
                    finish(started, context, exc)
                    raise
                finish(started, context, None)
                return response

            return grpc.unary_unary_rpc_method_handler(
                unary_unary, request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer)
        if handler.unary_stream is not None:
            behavior = handler.unary_stream

            async def unary_stream(request, context):
                started = time.perf_counter()
                in_flight.inc()
                try:
                    async for response in behavior(request, context):
                        yield response
                except BaseException as exc:
                    finish(started, context, exc)
                    raise
                finish(started, context, None)

            return grpc.unary_stream_rpc_method_handler(
                unary_stream, request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer)
        return handler


# -- hooks for the model lifecycle and progress reports ---------------------------------------

def model_state(role: str, state: str) -> None:
    MODEL_STATE.labels(role).state(state)


def model_loaded(role: str, seconds: float) -> None:
    MODEL_STATE.labels(role).state("loaded")
    MODEL_LOAD_SECONDS.labels(role).set(seconds)


def model_load_failed(role: str) -> None:
    MODEL_STATE.labels(role).state("failed")
    MODEL_LOAD_FAILURES.labels(role).inc()


class PassMeter:
    """Turns one request's progress reports into pass durations and item counts.

    A report says "``done`` of ``stage`` finished"; the time since the previous report of the
    same request is that pass's duration, and the growth of ``done`` the items it processed.
    Safe to call from the inference thread (prometheus-client's metrics are thread-safe).
    """

    def __init__(self) -> None:
        self._last = time.perf_counter()
        self._done: dict[str, int] = {}
        self._lock = threading.Lock()

    def step(self, stage: str, done: int) -> None:
        now = time.perf_counter()
        with self._lock:
            elapsed, self._last = now - self._last, now
            if done <= 0:
                return  # a start marker ("loading the model"), not a finished pass
            items = max(0, done - self._done.get(stage, 0))
            self._done[stage] = max(done, self._done.get(stage, 0))
        PASS_SECONDS.labels(stage).observe(elapsed)
        if items:
            PASS_ITEMS.labels(stage).inc(items)

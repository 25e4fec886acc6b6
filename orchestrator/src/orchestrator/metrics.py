"""The orchestrator's Prometheus metrics, served at ``GET /metrics``.

One :class:`Metrics` per app, with its own registry (tests build many apps in one process). What
is counted as it happens: HTTP requests (an ASGI middleware, by route template, never the raw
path), job outcomes and stage durations (hooks in the job manager), queue rejections. What is
read at scrape time: queue depth, running jobs, stored generations. Reading them takes no lock
of the job manager's (lengths of its collections), and the route is a plain ``def``, so a scrape
runs in a worker thread and never holds up the event loop that runs the generations.

Label values are bounded: route templates, methods, status codes, stage names, modes, quality
levels, outcome classes and output formats come from fixed sets, never from a request's ids,
prompts or paths.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Protocol

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from orchestrator import formats
from orchestrator.enums import Mode, Quality
from orchestrator.storage import GenerationStore, valid_id

if TYPE_CHECKING:
    from orchestrator.jobs import Job

# Stages of the pipeline reported as histograms (Job.timing_ms keys); other timings (decode,
# requantize, the models' wall time) stay in metadata.json only.
STAGES = ("queue", "imagegen", "depth", "segment", "pointcloud", "png", "storage", "total")
MODES = tuple(Mode)
QUALITIES = tuple(Quality)
HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")

HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                120.0, 300.0, 600.0)
STAGE_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                 60.0, 120.0, 300.0, 600.0, 1200.0)


def _one_of(value: Any, allowed: Iterable[str], default: str = "other") -> str:
    return value if isinstance(value, str) and value in allowed else default


def quality_of(job: Job) -> str:
    """The job's quality level; jobs from before quality levels existed count as standard."""
    quality = getattr(job, "quality", None) or getattr(job.inputs, "quality", None)
    return _one_of(quality or "standard", QUALITIES)


def failure_reason(status: str, error: str | None, error_status: int | None) -> str:
    """A bounded class of why a job did not complete."""
    if status == "cancelled":
        return "cancelled"
    if error and error.startswith("interrupted"):
        return "interrupted"
    if error_status == 429:
        return "rate_limited"
    if error_status == 503:
        return "service_unavailable"
    if error_status == 504:
        return "deadline"
    if error_status is not None and 400 <= error_status < 500:
        return "bad_input"
    return "internal"


class JobCounts(Protocol):
    """What the metrics read of the job manager at scrape time (orchestrator.job_manager)."""

    @property
    def stats(self) -> dict[str, int]: ...


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.http_seconds = Histogram(
            "orchestrator_http_request_duration_seconds",
            "HTTP requests by method, route template and status (the _count is the request "
            "count); an event stream counts until it closes.",
            ["method", "route", "status"], buckets=HTTP_BUCKETS, registry=self.registry)
        self.stage_seconds = Histogram(
            "orchestrator_stage_duration_seconds",
            "Time of each pipeline stage of completed generations (total = submission to "
            "stored; queue = waiting for a slot).",
            ["stage", "mode", "quality"], buckets=STAGE_BUCKETS, registry=self.registry)
        self.jobs_finished = Counter(
            "orchestrator_jobs_finished_total",
            "Generations finished, by outcome (completed, failed, cancelled) and reason class.",
            ["outcome", "reason"], registry=self.registry)
        self.queue_rejections = Counter(
            "orchestrator_queue_rejections_total",
            "Submissions refused with 429 because the queue was full.", registry=self.registry)
        self.served_bytes = Counter(
            "orchestrator_served_bytes_total",
            "Point cloud and image bytes sent, by format.", ["format"], registry=self.registry)
        self._live: _LiveCollector | None = None

    # -- hooks ------------------------------------------------------------------------------

    def watch(self, manager: JobCounts, store: GenerationStore) -> None:
        """Read the queue, the running jobs and the store at scrape time."""
        if self._live is None:
            self._live = _LiveCollector()
            self.registry.register(self._live)
        self._live.manager, self._live.store = manager, store

    def job_finished(self, job: Job) -> None:
        """Called once per job, when its final status is set."""
        if job.status == "completed":
            self.jobs_finished.labels("completed", "none").inc()
            mode, quality = _one_of(job.mode, MODES), quality_of(job)
            for stage in STAGES:
                ms = job.timing_ms.get(stage)
                if ms is not None:
                    self.stage_seconds.labels(stage, mode, quality).observe(ms / 1000)
            return
        reason = failure_reason(job.status, job.error, job.error_status)
        self.jobs_finished.labels(_one_of(job.status, ("failed", "cancelled")), reason).inc()

    def queue_full(self) -> None:
        self.queue_rejections.inc()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class _LiveCollector(Collector):
    manager: JobCounts | None = None
    store: GenerationStore | None = None

    def collect(self):
        manager, store = self.manager, self.store
        if manager is not None:
            stats = manager.stats
            yield GaugeMetricFamily("orchestrator_queue_depth", "Generations waiting for a slot.",
                                    value=stats["queued"])
            yield GaugeMetricFamily("orchestrator_jobs_running", "Generations running now.",
                                    value=stats["running"])
        if store is not None:
            yield GaugeMetricFamily("orchestrator_stored_generations",
                                    "Generations in DATA_DIR (completed and failed records).",
                                    value=_count_generations(store))


def _count_generations(store: GenerationStore) -> int:
    try:
        with os.scandir(store.root) as entries:
            return sum(1 for entry in entries if valid_id(entry.name))
    except OSError:
        return 0


# -- HTTP ------------------------------------------------------------------------------------

def _route_template(scope: Scope) -> str:
    route = scope.get("route")
    if route is None:
        return "unmatched"
    path = getattr(route, "path", "")
    # The viewer's StaticFiles mount at "/" has the path "".
    return path or "/"


def _served_format(scope: Scope, route: str) -> str | None:
    if route == "/generations/{id}/{asset}":
        return formats.download_metric(scope.get("path_params", {}).get("asset", ""))
    if route == "/generate":
        query = scope.get("query_string", b"").decode("latin-1")
        for part in query.split("&"):
            name, _, value = part.partition("=")
            if name == "format":
                return f"pcld_{_one_of(value, formats.GENERATE_FORMATS)}"
        accept = dict(scope.get("headers") or []).get(b"accept", b"").decode("latin-1")
        return f"pcld_{formats.negotiate(None, accept)}"
    return None


class HttpMetricsMiddleware:
    """Counts every request by method, route template and final status, and the bytes of the
    artifacts sent. Outermost, so 413s from the body limit and CORS answers count too."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        sent = 0

        async def counting_send(message: Message) -> None:
            nonlocal status, sent
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                sent += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, counting_send)
        finally:
            route = _route_template(scope)
            method = _one_of(scope.get("method"), HTTP_METHODS)
            self.metrics.http_seconds.labels(method, route, str(status)).observe(
                time.perf_counter() - started)
            if sent and 200 <= status < 300:
                served = _served_format(scope, route)
                if served is not None:
                    self.metrics.served_bytes.labels(served).inc(sent)


router = APIRouter(tags=["health"])


@router.get("/metrics", include_in_schema=False)
def metrics_endpoint(request: Request) -> Response:
    # A plain def: FastAPI runs it in a worker thread, off the event loop.
    metrics: Metrics = request.app.state.metrics
    return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)


"""The FastAPI application: ``create_app(settings)``.

Channels, the store and the job manager live for the app's lifespan; at startup the store
imports generations that only have a metadata.json, and (SQLite) jobs a previous process left
unfinished become ``failed: interrupted``.
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy.exc import InterfaceError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.gzip import DEFAULT_EXCLUDED_CONTENT_TYPES, GZipMiddleware

import pointcloud
from orchestrator import __version__
from orchestrator.errors import INTERNAL_DETAIL, ApiError, InternalErrorMiddleware
from orchestrator.formats import GRID_MEDIA_TYPE
from orchestrator.job_manager import JobManager
from orchestrator.limits import BodyLimitMiddleware
from orchestrator.metrics import HttpMetricsMiddleware, Metrics
from orchestrator.metrics import router as metrics_router
from orchestrator.pipeline import Pipeline
from orchestrator.routes import generate, generations, health, jobs, limits
from orchestrator.runtime import Runtime
from orchestrator.services import ModelServices
from orchestrator.settings import Settings
from orchestrator.storage import GenerationStore
from scene_rpc import tracing

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"
# pointcloud-lib's browser modules, served at /lib/<name> beside the viewer.
BROWSER_MODULES = ("pcld.js", "audio-react.js")
# Room for the multipart envelope and text fields around an image at the upload limit.
MULTIPART_OVERHEAD_BYTES = 1024 * 1024


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        store = GenerationStore(settings.data_dir, settings.database_url)
        await store.open()
        services = ModelServices(settings)
        try:
            await services.start()
            manager = JobManager(settings, store, Pipeline(settings, services, store),
                                 metrics=metrics)
            if metrics is not None:
                metrics.watch(manager, store)
            await manager.start()
            app.state.runtime = Runtime(settings, store, services, manager)
            log.info("orchestrator %s: data in %s (records: %s); depth %s, segment %s, "
                     "imagegen %s", __version__, settings.data_dir.resolve(),
                     "SQLite" if store.exclusive else "PostgreSQL", settings.depth_service_addr,
                     settings.segment_service_addr, settings.imagegen_service_addr)
            try:
                yield
            finally:
                await manager.close()
        finally:
            await services.close()
            await store.close()

    app = FastAPI(
        title="3D scene server",
        version=__version__,
        summary="A text prompt or a photo becomes a coloured, semantically labelled point cloud.",
        lifespan=lifespan,
    )
    # Innermost: an unexpected error becomes a 500 here, the connection kept (errors.py).
    app.add_middleware(InternalErrorMiddleware)
    if settings.gzip_level:
        # Next: compresses what the routes answer, negotiated with Accept-Encoding.
        app.add_middleware(GZipMiddleware, minimum_size=1024, compresslevel=settings.gzip_level,
                           exclude_content_types=(*DEFAULT_EXCLUDED_CONTENT_TYPES,
                                                  GRID_MEDIA_TYPE))
    # Added first, so that CORS (added next) wraps it and its 413 carries CORS headers too.
    app.add_middleware(BodyLimitMiddleware,
                       max_body_bytes=settings.max_upload_bytes + MULTIPART_OVERHEAD_BYTES,
                       max_upload_bytes=settings.max_upload_bytes)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.cors_origin_list,
        allow_origin_regex=settings.cors_origin_regex or None,
        allow_methods=["GET", "POST", "DELETE"],
        allow_headers=["Content-Type", "Authorization", "X-OpenAI-Key", "Idempotency-Key",
                       "Last-Event-ID", "Accept"],
        expose_headers=["X-Generation-Id", "Server-Timing", "Retry-After", "Location",
                        "Idempotent-Replayed"],
        max_age=600,
    )
    # Added last: outermost, so it sees the final status of every answer.
    metrics = Metrics() if settings.metrics_enabled else None
    app.state.metrics = metrics
    if metrics is not None:
        app.add_middleware(HttpMetricsMiddleware, metrics=metrics)
        app.include_router(metrics_router)
    if tracing.enabled():
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

        # Server spans for HTTP requests; the generation span (jobs.py) is their child.
        FastAPIInstrumentor.instrument_app(app, excluded_urls="metrics,health")
    _add_error_handlers(app)
    for module in (generate, jobs, generations, health, limits):
        app.include_router(module.router)

    @app.api_route("/lib/{name}", methods=["GET", "HEAD"], include_in_schema=False)
    def browser_module(name: str) -> FileResponse:
        """pointcloud-lib's ES modules for browsers: the PCLD decoder and listen mode."""
        if name not in BROWSER_MODULES:
            raise ApiError(404, f"no browser module {name!r}; there are "
                                f"{', '.join(BROWSER_MODULES)}")
        return FileResponse(pointcloud.js_decoder_path().with_name(name),
                            media_type="text/javascript")

    # Last: the viewer takes every path the API does not.
    if STATIC_DIR.is_dir():
        app.mount("/", StaticFiles(directory=STATIC_DIR, html=True), name="viewer")
    return app


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse({"detail": exc.detail}, status_code=exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        # Without "input": the rejected value may be the whole body, and with it the key.
        errors = [{k: v for k, v in error.items() if k in ("type", "loc", "msg")}
                  for error in exc.errors()]
        return JSONResponse({"detail": errors}, status_code=422)

    @app.exception_handler(OperationalError)
    @app.exception_handler(InterfaceError)
    @app.exception_handler(ConnectionError)
    async def database_down(request: Request, exc: Exception) -> JSONResponse:
        # The database (PostgreSQL restarting, a network cut): the client's request is fine
        # and worth retrying shortly, as with a model service that is down.
        log.warning("%s %s: the database did not answer: %s", request.method, request.url.path,
                    exc)
        return JSONResponse({"detail": "the database is not answering; retry shortly"},
                            status_code=503, headers={"Retry-After": "5"})

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        # Only errors of the middlewares themselves get here (InternalErrorMiddleware answers
        # the routes').
        log.exception("unhandled error in %s %s", request.method, request.url.path, exc_info=exc)
        return JSONResponse({"detail": INTERNAL_DETAIL}, status_code=500)

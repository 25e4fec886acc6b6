"""The one skeleton of a model service. Each service fills it in the same way:

- ``settings.py``: its pydantic-settings object;
- model object(s): :class:`scene_rpc.lifecycle.ManagedModel` subclasses;
- ``servicer.py``: proto <-> the models' calls, nothing more (``GetInfo`` answers
  :meth:`ServiceInfo.to_proto`);
- ``server.py``: ``build(settings, cpu_threads) -> ModelService``: which models, which
  servicer, which limits;
- ``__main__.py``: ``scene_rpc.service.main(NAME, Settings, "pkg.server:build")``.

:func:`main` does the rest in one order for all: settings validated (a bad one stops the process
with the reason, no traceback), logging and tracing configured before the heavy imports, CPU
threads set, the service built; then :meth:`ModelService.serve`: metrics port, server bound
(health, reflection, interceptors, message limits), preload in the background, readiness
following the models, and on SIGTERM a graceful stop and the models closed.

Health (``grpc.health.v1``) tells two things apart:

- readiness: the overall server ``""`` and the service's full name (e.g.
  ``scene.depth.v1.DepthService``). SERVING when the service can answer a request now:
  NOT_SERVING while a preload runs and after a load failed, until a later load (a request's, or
  the periodic retry here) succeeds. A service that loads lazily is SERVING before its first
  request.
- liveness: the name :data:`LIVENESS` (``"liveness"``), SERVING from the moment the port binds
  until shutdown, whatever the models do, so a slow or failed load never gets the process killed.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import os
import signal
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import grpc
from grpc_health.v1 import health_pb2
from pydantic import ValidationError

from scene.common.v1 import common_pb2
from scene_rpc import server as rpc_server
from scene_rpc.errors import ModelUnavailable
from scene_rpc.health_probe import LIVENESS  # defined beside the probe that asks it
from scene_rpc.lifecycle import ManagedModel
from scene_rpc.metrics import serve_metrics

log = logging.getLogger(__name__)


SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING

# Shortest wait before retrying a failed load in the background (a service configured with no
# retry interval must not spin).
MIN_RETRY_S = 1.0

S = TypeVar("S")


def load_settings(name: str, settings_class: Callable[[], S]) -> S:
    """The service's settings; a bad one stops the process naming it, without a traceback."""
    try:
        return settings_class()
    except ValidationError as exc:
        raise SystemExit(f"{name}: invalid settings: {exc}") from None


def available_cores() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def configure_cpu_threads(threads: int | None) -> int:
    """The CPU threads a service computes with, set once here for every service.

    ``threads``: the service's setting (0 = one per available core), or None for a service that
    runs no torch (its count is then the cores it may use, as reported by GetInfo).
    """
    if threads is None:
        return available_cores()
    # Imported here: scene_rpc itself does not depend on torch.
    from scene_rpc.ml.torch_runtime import configure_threads

    return configure_threads(threads)


@dataclass
class ServiceInfo:
    """What ``GetInfo`` answers, the same way in every service."""

    #: The proto service's full name, e.g. "scene.depth.v1.DepthService".
    full_name: str
    version: str
    models: Sequence[ManagedModel]
    cpu_threads: int
    limits: common_pb2.Limits = field(default_factory=common_pb2.Limits)

    def to_proto(self) -> common_pb2.GetInfoResponse:
        response = common_pb2.GetInfoResponse(
            service=self.full_name,
            version=self.version,
            models=[model.info() for model in self.models],
            cpu_threads=self.cpu_threads,
        )
        response.limits.CopyFrom(self.limits)
        return response


class Readiness:
    """Health follows the models: an observer of each, never a poll.

    Not ready while a model that must be loaded at start (``required``) is not, or while any model
    has failed its last load; for each failure a background retry is scheduled after the model's
    retry interval, so a replica that receives no traffic (because it is not ready) still recovers.
    """

    def __init__(self, health, names: Sequence[str], models: Sequence[ManagedModel],
                 required: Sequence[ManagedModel]) -> None:
        self.health = health
        self.names = ["", *names]
        self.models = list(models)
        self.required = list(required)
        self._retries: dict[int, asyncio.Task] = {}
        self._applied: tuple[int, str] | None = None
        self._applying = asyncio.Lock()
        self._pending: set[asyncio.Task] = set()
        for model in self.models:
            model.add_observer(self._changed)

    @property
    def ready(self) -> bool:
        if any(not model.ready for model in self.required):
            return False
        return not any(model.failed for model in self.models)

    @property
    def reason(self) -> str:
        """Why the service is not ready ("" when it is)."""
        for model in self.models:
            if model.failed:
                return f"{model.role} model failed to load: {model.last_error}"
        for model in self.required:
            if not model.ready:
                return f"{model.role} model is loading"
        return ""

    async def apply(self) -> None:
        """Set every readiness name to the models' current state."""
        async with self._applying:  # one at a time, each with the state as it is then
            status = SERVING if self.ready else NOT_SERVING
            reason = self.reason
            if (status, reason) == self._applied:
                return
            changed = self._applied is None or status != self._applied[0]
            self._applied = (status, reason)
            if changed:
                for name in self.names:
                    await self.health.set(name, status)
        if status == SERVING:
            log.info("ready")
        elif any(model.failed for model in self.models):
            log.warning("not ready: %s", reason)
        else:
            log.info("not ready: %s", reason)

    def _changed(self, model: ManagedModel) -> None:
        loop = asyncio.get_running_loop()
        applying = loop.create_task(self.apply())
        self._pending.add(applying)
        applying.add_done_callback(self._pending.discard)
        if model.failed and id(model) not in self._retries:
            self._retries[id(model)] = loop.create_task(self._retry(model))

    async def _retry(self, model: ManagedModel) -> None:
        try:
            while model.failed:
                await asyncio.sleep(max(MIN_RETRY_S, model.seconds_until_retry() + 0.01))
                if model.failed:
                    log.info("retrying the %s model's load", model.role)
                    with contextlib.suppress(ModelUnavailable):
                        await model.load()
        finally:
            self._retries.pop(id(model), None)

    def close(self) -> None:
        for task in list(self._retries.values()):
            task.cancel()


@dataclass
class ModelService:
    """A model service as its ``server.py`` describes it; run by :meth:`serve`."""

    #: The process's name in logs ("depth-service").
    name: str
    info: ServiceInfo
    #: Adds the servicer to a server (``add_XServiceServicer_to_server``).
    register: Callable[[grpc.aio.Server], None]
    #: "host:port" to bind (port 0 = any free port, logged).
    address: str
    #: Seconds in-flight calls may take after SIGTERM.
    grace_s: float
    max_message_bytes: int = rpc_server.DEFAULT_MAX_MESSAGE_BYTES
    #: Prometheus /metrics on its own HTTP port; 0 = off.
    metrics_port: int = 0
    #: Loaded in the background once the port binds; the service is not ready until they are.
    #: Empty: models load on the first request that needs them, and the service is ready at once.
    preload: Sequence[ManagedModel] = ()
    #: Releases what the models hold (threads, clients), after the server stopped.
    close: Callable[[], None] = lambda: None
    #: What ``start`` logs once the port is bound (besides the port).
    description: str = ""

    server: Any = field(default=None, init=False)
    health: Any = field(default=None, init=False)
    readiness: Readiness | None = field(default=None, init=False)
    port: int = field(default=0, init=False)
    _preloading: asyncio.Task | None = field(default=None, init=False)

    async def start(self) -> int:
        """Bind and start: liveness SERVING, readiness per the models, the preload started.
        Returns the bound port."""
        self.server, self.health = rpc_server.build_server(
            service_names=[self.info.full_name], register=self.register,
            max_message_bytes=self.max_message_bytes)
        self.readiness = Readiness(self.health, [self.info.full_name], self.info.models,
                                   self.preload)
        # Before the port opens: the health servicer starts with "" SERVING, which would be a lie
        # for the moment before the preload begins.
        await self.readiness.apply()
        await self.health.set(LIVENESS, SERVING)
        self.port = self.server.add_insecure_port(self.address)
        if self.port == 0:
            raise RuntimeError(f"could not bind {self.address}")
        await self.server.start()
        log.info("%s listening on port %d%s (%d CPU threads)", self.name, self.port,
                 f", {self.description}" if self.description else "", self.info.cpu_threads)
        if self.preload:
            self._preloading = asyncio.create_task(self._preload())
        return self.port

    async def _preload(self) -> None:
        for model in self.preload:
            # A failure is remembered by the model, reported by GetInfo and health, and retried.
            with contextlib.suppress(ModelUnavailable):
                await model.load()

    async def stop(self, grace_s: float | None = None) -> None:
        """NOT_SERVING everywhere, new calls refused, in-flight ones given ``grace_s``, then
        the models closed."""
        grace = self.grace_s if grace_s is None else grace_s
        if self._preloading is not None and not self._preloading.done():
            self._preloading.cancel()
        if self.readiness is not None:
            self.readiness.close()
        try:
            if self.server is not None:
                await rpc_server.stop(self.server, self.health, grace)
        finally:
            self.close()
            log.info("%s stopped", self.name)

    async def serve(self) -> None:
        """Serve until SIGTERM or SIGINT, then stop gracefully."""
        serve_metrics(self.metrics_port)
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stopping.set)
        try:
            await self.start()
            await stopping.wait()
            log.info("signal received; stopping with a %.0fs grace period", self.grace_s)
        finally:
            await self.stop()


def main(name: str, settings_class: Callable[[], Any], build: str, *,
         torch_threads: bool = True, before_build: Callable[[], None] | None = None) -> None:
    """``python -m <service>``: the bootstrap every model service shares.

    ``build`` is "module:function", imported only after logging is configured (so the heavy
    imports' messages are formatted too), called as ``function(settings, cpu_threads)`` and
    returning the :class:`ModelService`. ``torch_threads``: whether the service computes with
    torch (its settings then have ``threads``).
    """
    from scene_rpc.logs import configure_logging
    from scene_rpc.tracing import configure_tracing

    settings = load_settings(name, settings_class)
    configure_logging(name, settings.log_level)
    configure_tracing(name, settings.trace_exporter)
    if before_build is not None:
        before_build()
    cpu_threads = configure_cpu_threads(settings.threads if torch_threads else None)
    module_name, function_name = build.split(":")
    service = getattr(importlib.import_module(module_name), function_name)(settings, cpu_threads)
    asyncio.run(service.serve())

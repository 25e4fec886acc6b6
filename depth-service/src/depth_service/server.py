"""The depth service's gRPC server: built from the shared scene_rpc bootstrap (error mapping,
health, reflection, message limits, graceful shutdown)."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from depth_service.model import DepthModel
from depth_service.servicer import SERVICE_NAME, DepthServicer
from depth_service.settings import Settings
from scene.depth.v1 import depth_pb2_grpc
from scene_rpc import server as rpc_server
from scene_rpc.errors import ModelUnavailable
from scene_rpc.torch_runtime import configure_threads

log = logging.getLogger(__name__)


def create_server(settings: Settings, model: DepthModel, *, cpu_threads: int):
    """(server, health servicer) with the DepthService registered; not yet bound or started."""
    servicer = DepthServicer(model, settings, cpu_threads=cpu_threads)
    return rpc_server.build_server(
        service_names=[SERVICE_NAME],
        register=lambda server: depth_pb2_grpc.add_DepthServiceServicer_to_server(servicer, server),
        max_message_bytes=settings.max_message_bytes,
    )


async def _preload(model: DepthModel) -> None:
    # A failure is remembered by the model, reported by Info and retried by the next request.
    with contextlib.suppress(ModelUnavailable):
        await model.load()


async def serve(settings: Settings) -> None:
    """Serve until SIGTERM/SIGINT; in-flight requests get ``settings.grace_s`` to finish."""
    cpu_threads = configure_threads(settings.threads)
    model = DepthModel(settings)
    server, health = create_server(settings, model, cpu_threads=cpu_threads)
    preload = None

    def started(port: int) -> None:
        nonlocal preload
        log.info("depth-service listening on port %d (model %s, %d CPU threads)", port,
                 settings.model, cpu_threads)
        if settings.preload:
            preload = asyncio.create_task(_preload(model))

    try:
        await rpc_server.run_until_signalled(
            server, health, f"{settings.host}:{settings.port}", grace_s=settings.grace_s,
            on_started=started, metrics_port=settings.metrics_port,
        )
    finally:
        if preload is not None and not preload.done():
            preload.cancel()
        model.close()
        log.info("depth-service stopped")


__all__ = ["create_server", "serve"]

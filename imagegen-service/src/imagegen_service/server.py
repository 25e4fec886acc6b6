"""Building and running the gRPC server (the shared bootstrap plus this service's parts)."""

from __future__ import annotations

import logging

import grpc

from imagegen_service.generator import ImageGenerator
from imagegen_service.servicer import SERVICE_NAME, ImageGenServicer
from imagegen_service.settings import Settings
from scene.imagegen.v1 import imagegen_pb2_grpc
from scene_rpc import server as rpc_server

log = logging.getLogger(__name__)


def create_server(settings: Settings, generator: ImageGenerator | None = None):
    """The server, its health servicer and the generator behind it (not yet started)."""
    generator = generator or ImageGenerator(settings)
    servicer = ImageGenServicer(generator)

    def register(server: grpc.aio.Server) -> None:
        imagegen_pb2_grpc.add_ImageGenServiceServicer_to_server(servicer, server)

    server, health = rpc_server.build_server(service_names=[SERVICE_NAME], register=register)
    return server, health, generator


async def serve(settings: Settings) -> None:
    server, health, generator = create_server(settings)
    # Nothing to download, but loading first means Info reports the model as loaded at once.
    await generator.load()
    await rpc_server.run_until_signalled(
        server, health, f"{settings.host}:{settings.port}", grace_s=settings.grace_s,
        on_started=lambda port: log.info(
            "imagegen-service listening on %s:%d (model %s, API %s)", settings.host, port,
            settings.model, settings.openai_base_url),
        metrics_port=settings.metrics_port,
    )

"""Assembling and running the service: models, segmenter, servicer, the shared gRPC bootstrap."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import grpc

from scene.segment.v1 import segment_pb2_grpc
from scene_rpc import server as rpc_server
from scene_rpc.errors import ModelUnavailable
from segment_service.models import SamModel, SemanticModel
from segment_service.segmenter import Segmenter
from segment_service.servicer import SERVICE_NAME, SegmentServicer
from segment_service.settings import Mode, Settings

log = logging.getLogger(__name__)


@dataclass
class App:
    server: grpc.aio.Server
    health: object
    segmenter: Segmenter

    @property
    def address(self) -> str:
        s = self.segmenter.settings
        return f"{s.host}:{s.port}"

    async def start(self) -> int:
        """Bind and serve; returns the bound port (an ephemeral one for SEG_PORT=0)."""
        return await rpc_server.start(self.server, self.health, self.address)

    async def stop(self, grace_s: float | None = None) -> None:
        grace = self.segmenter.settings.grace_s if grace_s is None else grace_s
        await rpc_server.stop(self.server, self.health, grace)
        self.segmenter.close()


def build_app(settings: Settings) -> App:
    segmenter = Segmenter(settings, SamModel(settings), SemanticModel(settings))
    server, health = rpc_server.build_server(
        service_names=[SERVICE_NAME],
        register=lambda s: segment_pb2_grpc.add_SegmentServiceServicer_to_server(
            SegmentServicer(segmenter), s),
        max_message_bytes=settings.max_message_bytes,
    )
    return App(server=server, health=health, segmenter=segmenter)


async def preload(segmenter: Segmenter) -> None:
    """Load the models the default mode needs; SAM2 is left alone in semantic mode."""
    models = [segmenter.semantic]
    if segmenter.settings.mode is not Mode.SEMANTIC:
        models.append(segmenter.sam)
    for model in models:
        try:
            await model.load()
        except ModelUnavailable:
            pass  # remembered and reported by Info; requests retry it


async def serve(settings: Settings) -> None:
    app = build_app(settings)
    preloading = asyncio.create_task(preload(app.segmenter)) if settings.preload else None
    try:
        await rpc_server.run_until_signalled(
            app.server, app.health, app.address, grace_s=settings.grace_s,
            on_started=lambda port: log.info("segment service listening on port %d", port),
            metrics_port=settings.metrics_port,
        )
    finally:
        if preloading is not None:
            preloading.cancel()
        app.segmenter.close()

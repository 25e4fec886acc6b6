"""The depth service as the shared skeleton (``scene_rpc.service``) describes it: its one model,
its servicer, its limits."""

from __future__ import annotations

from depth_service import NAME, __version__
from depth_service.model import DepthModel
from depth_service.servicer import SERVICE_NAME, DepthServicer
from depth_service.settings import Settings
from scene.common.v1 import common_pb2
from scene.depth.v1 import depth_pb2_grpc
from scene_rpc.service import ModelService, ServiceInfo


def limits(settings: Settings) -> common_pb2.Limits:
    """What this service refuses, advertised by GetInfo for the front door to check first."""
    return common_pb2.Limits(max_image_pixels=settings.max_pixels,
                             max_message_bytes=settings.max_message_bytes)


def build(settings: Settings, cpu_threads: int, *, model: DepthModel | None = None
          ) -> ModelService:
    model = model or DepthModel(settings)
    info = ServiceInfo(SERVICE_NAME, __version__, [model], cpu_threads, limits(settings))
    servicer = DepthServicer(model, settings, info)
    return ModelService(
        name=NAME,
        info=info,
        register=lambda server: depth_pb2_grpc.add_DepthServiceServicer_to_server(servicer, server),
        address=f"{settings.host}:{settings.port}",
        grace_s=settings.grace_s,
        max_message_bytes=settings.max_message_bytes,
        metrics_port=settings.metrics_port,
        preload=[model] if settings.preload else [],
        close=model.close,
        description=f"model {settings.model}",
    )

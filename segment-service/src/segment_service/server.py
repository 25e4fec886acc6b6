"""The segment service as the shared skeleton (``scene_rpc.service``) describes it: its two
models behind the segmenter, its servicer, its limits."""

from __future__ import annotations

from scene.common.v1 import common_pb2
from scene.segment.v1 import segment_pb2_grpc
from scene_rpc.lifecycle import ManagedModel
from scene_rpc.service import ModelService, ServiceInfo
from segment_service import NAME, __version__
from segment_service.models import SamModel, SemanticModel
from segment_service.segmenter import Segmenter
from segment_service.servicer import SERVICE_NAME, SegmentServicer
from segment_service.settings import Mode, Settings


def limits(settings: Settings) -> common_pb2.Limits:
    """What this service refuses, advertised by GetInfo for the front door to check first."""
    return common_pb2.Limits(max_image_pixels=settings.max_pixels,
                             max_message_bytes=settings.max_message_bytes)


def preloaded_models(segmenter: Segmenter) -> list[ManagedModel]:
    """The models the default mode needs; SAM2 is left alone in semantic mode."""
    models: list[ManagedModel] = [segmenter.semantic]
    if segmenter.settings.mode is not Mode.SEMANTIC:
        models.append(segmenter.sam)
    return models


def build(settings: Settings, cpu_threads: int, *, segmenter: Segmenter | None = None
          ) -> ModelService:
    segmenter = segmenter or Segmenter(settings, SamModel(settings), SemanticModel(settings))
    info = ServiceInfo(SERVICE_NAME, __version__, [segmenter.sam, segmenter.semantic],
                       cpu_threads, limits(settings))
    servicer = SegmentServicer(segmenter, info)
    return ModelService(
        name=NAME,
        info=info,
        register=lambda server: segment_pb2_grpc.add_SegmentServiceServicer_to_server(
            servicer, server),
        address=f"{settings.host}:{settings.port}",
        grace_s=settings.grace_s,
        max_message_bytes=settings.max_message_bytes,
        metrics_port=settings.metrics_port,
        preload=preloaded_models(segmenter) if settings.preload else [],
        close=segmenter.close,
        description=f"SAM2 {settings.sam_model}, semantic {settings.semantic_model}",
    )

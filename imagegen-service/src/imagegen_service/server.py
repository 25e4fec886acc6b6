"""The image service as the shared skeleton (``scene_rpc.service``) describes it: its one
"model" (the remote API behind ``ImageGenerator``), its servicer, its limits."""

from __future__ import annotations

from imagegen_service import NAME, __version__
from imagegen_service.generator import ImageGenerator
from imagegen_service.servicer import SERVICE_NAME, ImageGenServicer
from imagegen_service.settings import Settings
from scene.common.v1 import common_pb2
from scene.imagegen.v1 import imagegen_pb2_grpc
from scene_rpc.server import DEFAULT_MAX_MESSAGE_BYTES
from scene_rpc.service import ModelService, ServiceInfo


def limits(settings: Settings) -> common_pb2.Limits:
    """What this service refuses, advertised by GetInfo for the front door to check first: the
    caller's prompt and vibe (the template's text is budgeted inside the model's limit) and the
    generated image's pixels."""
    return common_pb2.Limits(max_prompt_chars=settings.prompt_limit,
                             max_vibe_chars=settings.max_vibe_chars,
                             max_image_pixels=settings.max_image_pixels,
                             max_message_bytes=DEFAULT_MAX_MESSAGE_BYTES)


def build(settings: Settings, cpu_threads: int, *, generator: ImageGenerator | None = None
          ) -> ModelService:
    generator = generator or ImageGenerator(settings)
    info = ServiceInfo(SERVICE_NAME, __version__, [generator], cpu_threads, limits(settings))
    servicer = ImageGenServicer(generator, info)
    return ModelService(
        name=NAME,
        info=info,
        register=lambda server: imagegen_pb2_grpc.add_ImageGenServiceServicer_to_server(
            servicer, server),
        address=f"{settings.host}:{settings.port}",
        grace_s=settings.grace_s,
        metrics_port=settings.metrics_port,
        # Nothing to download: "loading" only names the model, so it is always done at start
        # and Info reports the model as loaded at once.
        preload=[generator],
        description=f"model {settings.model}, API {settings.openai_base_url}",
    )

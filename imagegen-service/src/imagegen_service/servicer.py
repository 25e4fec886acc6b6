"""gRPC servicer: proto in, ``ImageGenerator`` call, proto out. Nothing else happens here."""

from __future__ import annotations

import time

import grpc

from imagegen_service.generator import GenerationRequest, GenerationResult, ImageGenerator
from imagegen_service.prompts import Mode
from scene.imagegen.v1 import imagegen_pb2, imagegen_pb2_grpc
from scene_rpc.errors import InvalidInput
from scene_rpc.service import ServiceInfo

SERVICE_NAME = imagegen_pb2.DESCRIPTOR.services_by_name["ImageGenService"].full_name

_MODES = {
    imagegen_pb2.GENERATION_MODE_UNSPECIFIED: Mode.STANDARD,
    imagegen_pb2.GENERATION_MODE_STANDARD: Mode.STANDARD,
    imagegen_pb2.GENERATION_MODE_PANORAMA: Mode.PANORAMA,
}


def to_request(message: imagegen_pb2.GenerateImageRequest) -> GenerationRequest:
    mode = _MODES.get(message.mode)
    if mode is None:
        # proto3 enums are open: an unknown number arrives intact from a newer client.
        raise InvalidInput(f"unknown generation mode {message.mode}")
    return GenerationRequest(
        prompt=message.prompt,
        vibe=message.vibe,
        mode=mode,
        api_key=message.openai_api_key,
        width_px=message.width_px,
        height_px=message.height_px,
        request_id=message.request_id,
    )


def to_response(result: GenerationResult) -> imagegen_pb2.GenerateImageResponse:
    response = imagegen_pb2.GenerateImageResponse(
        image_png=result.image_png,
        width_px=result.width_px,
        height_px=result.height_px,
        prompt_sent=result.prompt_sent,
        revised_prompt=result.revised_prompt,
        prompt=result.prompt,
        vibe=result.vibe,
        model_id=result.model_id,
        timing_ms=result.timing_ms,
    )
    if result.seam_mad_before is not None:
        response.seam_mad_before = result.seam_mad_before
    if result.seam_mad_after is not None:
        response.seam_mad_after = result.seam_mad_after
    return response


class ImageGenServicer(imagegen_pb2_grpc.ImageGenServiceServicer):
    def __init__(self, generator: ImageGenerator, info: ServiceInfo) -> None:
        self.generator = generator
        self.info = info

    async def GenerateImage(self, request, context: grpc.aio.ServicerContext):
        budget = self.generator.settings.deadline_s
        remaining = context.time_remaining()
        if remaining is not None:
            budget = min(budget, remaining)
        result = await self.generator.generate(to_request(request),
                                               deadline=time.monotonic() + budget)
        return to_response(result)

    async def GetInfo(self, request, context):
        return self.info.to_proto()

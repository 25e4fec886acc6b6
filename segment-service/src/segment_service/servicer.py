"""gRPC servicer: proto -> numpy, the segmenter, numpy -> proto. Errors become status codes in
scene_rpc's interceptor (InvalidInput -> INVALID_ARGUMENT, ModelUnavailable -> UNAVAILABLE)."""

from __future__ import annotations

import asyncio
import time

from scene.segment.v1 import segment_pb2, segment_pb2_grpc
from scene_rpc.arrays import array_to_proto
from scene_rpc.errors import InvalidInput
from scene_rpc.images import decode_image
from scene_rpc.progress import progress_to_proto
from scene_rpc.service import ServiceInfo
from segment_service.segmenter import Knobs, Segmenter, SegmentResult
from segment_service.settings import CropMode, Mode, PromptStrategy

SERVICE_NAME = segment_pb2.DESCRIPTOR.services_by_name["SegmentService"].full_name

_MODE_FROM_PROTO = {
    segment_pb2.SEGMENT_MODE_UNSPECIFIED: None,
    segment_pb2.SEGMENT_MODE_HYBRID: Mode.HYBRID,
    segment_pb2.SEGMENT_MODE_SEMANTIC: Mode.SEMANTIC,
    segment_pb2.SEGMENT_MODE_SAM: Mode.SAM,
}
_MODE_TO_PROTO = {mode: code for code, mode in _MODE_FROM_PROTO.items() if mode is not None}
_PROMPT_STRATEGY_FROM_PROTO = {
    segment_pb2.PROMPT_STRATEGY_UNSPECIFIED: None,
    segment_pb2.PROMPT_STRATEGY_GRID: PromptStrategy.GRID,
    segment_pb2.PROMPT_STRATEGY_SEMANTIC: PromptStrategy.SEMANTIC,
}
_CROP_MODE_FROM_PROTO = {
    segment_pb2.CROP_MODE_UNSPECIFIED: None,
    segment_pb2.CROP_MODE_OFF: CropMode.OFF,
    segment_pb2.CROP_MODE_AUTO: CropMode.AUTO,
}


def knobs_from_request(request: segment_pb2.SegmentRequest) -> Knobs:
    """The request's quality knobs; unknown enums and out-of-range numbers: InvalidInput."""
    if request.prompt_strategy not in _PROMPT_STRATEGY_FROM_PROTO:
        raise InvalidInput(f"unknown prompt strategy {request.prompt_strategy}")
    if request.crop_mode not in _CROP_MODE_FROM_PROTO:
        raise InvalidInput(f"unknown crop mode {request.crop_mode}")
    return Knobs(
        points_per_side=request.points_per_side,
        crop_points_per_side=request.crop_points_per_side,
        prompt_strategy=_PROMPT_STRATEGY_FROM_PROTO[request.prompt_strategy],
        crop_mode=_CROP_MODE_FROM_PROTO[request.crop_mode],
        max_input_side_px=request.max_input_side_px,
    )


def to_response(result: SegmentResult, decode_ms: float) -> segment_pb2.SegmentResponse:
    height, width = result.categories.shape
    timing = dict(result.timing_ms)
    timing["decode"] = decode_ms
    timing["total"] = timing.get("total", 0.0) + decode_ms
    return segment_pb2.SegmentResponse(
        categories=array_to_proto(result.categories),
        labels=[
            segment_pb2.DetectedLabel(
                ade20k_id=label.ade20k_id,
                label=label.label,
                pixel_fraction=label.pixel_fraction,
                category=label.category,
            )
            for label in result.labels
        ],
        mask_count=result.mask_count,
        prompt_count=result.prompt_count,
        mode=_MODE_TO_PROTO[result.mode],
        sam_model_id=result.sam_model_id,
        semantic_model_id=result.semantic_model_id,
        width_px=width,
        height_px=height,
        timing_ms=timing,
    )


class SegmentServicer(segment_pb2_grpc.SegmentServiceServicer):
    def __init__(self, segmenter: Segmenter, info: ServiceInfo) -> None:
        self.segmenter = segmenter
        self.info = info

    async def _decode(self, request: segment_pb2.SegmentRequest):
        if request.mode not in _MODE_FROM_PROTO:
            raise InvalidInput(f"unknown segment mode {request.mode}")
        knobs_from_request(request)  # bad knobs are refused before the image is decoded
        started = time.perf_counter()
        # Decoding a large image takes long enough to stall health checks on the event loop.
        rgb = await asyncio.to_thread(
            decode_image, request.image, max_pixels=self.segmenter.settings.max_pixels
        )
        return rgb, (time.perf_counter() - started) * 1000

    async def Segment(self, request, context):
        rgb, decode_ms = await self._decode(request)
        result = await self.segmenter.segment(
            rgb, mode=_MODE_FROM_PROTO[request.mode], panorama=request.panorama,
            knobs=knobs_from_request(request),
        )
        return to_response(result, decode_ms)

    async def StreamSegment(self, request, context):
        rgb, decode_ms = await self._decode(request)
        events = self.segmenter.stream(
            rgb, mode=_MODE_FROM_PROTO[request.mode], panorama=request.panorama,
            knobs=knobs_from_request(request),
        )
        try:
            async for event in events:
                if isinstance(event, SegmentResult):
                    yield segment_pb2.SegmentEvent(result=to_response(event, decode_ms))
                else:
                    yield segment_pb2.SegmentEvent(progress=progress_to_proto(event))
        finally:
            # Runs when the client cancels too: the segmenter then stops between batches.
            await events.aclose()

    async def GetInfo(self, request, context):
        return self.info.to_proto()

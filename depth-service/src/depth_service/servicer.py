"""gRPC DepthService: translates protos to the model's calls and its results back, nothing more."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

import numpy as np

from depth_service.model import DepthModel
from depth_service.pipeline import DepthEstimate, EstimateOptions
from depth_service.settings import Settings, TileMode
from scene.common.v1 import common_pb2
from scene.depth.v1 import depth_pb2, depth_pb2_grpc
from scene_rpc.arrays import array_to_proto
from scene_rpc.images import decode_image
from scene_rpc.progress import Progress, progress_to_proto
from scene_rpc.service import ServiceInfo

log = logging.getLogger(__name__)

SERVICE_NAME = depth_pb2.DESCRIPTOR.services_by_name["DepthService"].full_name

_TILE_MODES = {
    depth_pb2.TILING_MODE_OFF: TileMode.OFF,
    depth_pb2.TILING_MODE_AUTO: TileMode.AUTO,
    depth_pb2.TILING_MODE_FORCED: TileMode.FORCED,
}


def options_from_request(request: depth_pb2.EstimateDepthRequest,
                         settings: Settings) -> EstimateOptions:
    """Request fields over the service's defaults (0 / UNSPECIFIED = the default)."""
    return EstimateOptions(
        panorama=request.panorama,
        tile_mode=_TILE_MODES.get(request.tiling, settings.tile_mode),
        tile_size=request.tile_size_px or settings.tile_size,
        tile_overlap=request.tile_overlap_fraction or settings.tile_overlap,
        max_input_side=request.max_input_side_px or settings.max_input_side_px,
        panorama_mode=settings.panorama_mode,
        panorama_views=settings.panorama_views,
    )


def response_from_estimate(estimate: DepthEstimate) -> depth_pb2.EstimateDepthResponse:
    height, width = estimate.normalized.shape
    response = depth_pb2.EstimateDepthResponse(
        normalized_depth=array_to_proto(estimate.normalized),
        model_id=estimate.model_id,
        width_px=width,
        height_px=height,
        tile_count=estimate.tile_count,
        timing_ms=estimate.timing_ms,
    )
    if estimate.depth_m is not None:
        response.depth_m.CopyFrom(array_to_proto(estimate.depth_m))
    if estimate.focal_length_px is not None:
        response.focal_length_px = estimate.focal_length_px
    if estimate.horizontal_fov_deg is not None:
        response.horizontal_fov_deg = estimate.horizontal_fov_deg
    return response


class DepthServicer(depth_pb2_grpc.DepthServiceServicer):
    def __init__(self, model: DepthModel, settings: Settings, info: ServiceInfo) -> None:
        self.model = model
        self.settings = settings
        self.info = info

    async def EstimateDepth(self, request, context) -> depth_pb2.EstimateDepthResponse:
        result = None
        async for event in self._estimate(request):
            if isinstance(event, depth_pb2.EstimateDepthResponse):
                result = event
        assert result is not None, "the pipeline ends with a result"
        return result

    async def StreamEstimateDepth(
        self, request, context
    ) -> AsyncIterator[depth_pb2.EstimateDepthEvent]:
        async for event in self._estimate(request):
            if isinstance(event, depth_pb2.EstimateDepthResponse):
                yield depth_pb2.EstimateDepthEvent(result=event)
            else:
                yield depth_pb2.EstimateDepthEvent(progress=event)

    async def GetInfo(self, request, context) -> common_pb2.GetInfoResponse:
        return self.info.to_proto()

    async def _estimate(
        self, request: depth_pb2.EstimateDepthRequest
    ) -> AsyncIterator[common_pb2.Progress | depth_pb2.EstimateDepthResponse]:
        started = time.perf_counter()
        options = options_from_request(request, self.settings)
        image: np.ndarray = await asyncio.to_thread(
            decode_image, request.image, max_pixels=self.settings.max_pixels
        )
        decode_ms = (time.perf_counter() - started) * 1000.0
        async for event in self.model.estimate(image, options):
            if isinstance(event, Progress):
                yield progress_to_proto(event)
                continue
            event.timing_ms["decode"] = decode_ms
            response = await asyncio.to_thread(response_from_estimate, event)
            response.timing_ms["total"] = (time.perf_counter() - started) * 1000.0
            log.info("request %r: %dx%d, %d tiles, %.0f ms", request.request_id,
                     image.shape[1], image.shape[0], event.tile_count, response.timing_ms["total"])
            yield response

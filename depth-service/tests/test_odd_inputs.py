"""Odd but valid requests: each either succeeds or is refused as the caller's fault
(INVALID_ARGUMENT), never an internal error, now that only InvalidInput is the caller's."""

from __future__ import annotations

import grpc
import numpy as np
import pytest

from scene.depth.v1 import depth_pb2
from scene_rpc.images import image_message

SIZES = [(8, 8), (8, 600), (600, 8), (9, 17), (50, 100), (100, 50), (33, 1000), (1000, 33)]


@pytest.mark.parametrize("panorama", [False, True])
@pytest.mark.parametrize("tiling", [depth_pb2.TILING_MODE_AUTO, depth_pb2.TILING_MODE_FORCED])
async def test_odd_shapes_never_fail_internally(serve, settings_factory, fakes, panorama, tiling):
    async with serve(settings_factory(), loader=lambda *_: fakes.DepthBackend(native=32)
                     ) as running:
        for height, width in SIZES:
            rgb = np.random.default_rng(height * width).integers(0, 255, (height, width, 3),
                                                                  dtype=np.uint8)
            for tile_size in (0, 32, 4096):
                request = depth_pb2.EstimateDepthRequest(
                    image=image_message(rgb), panorama=panorama, tiling=tiling,
                    tile_size_px=tile_size)
                try:
                    response = await running.stub.EstimateDepth(request)
                except grpc.aio.AioRpcError as exc:
                    assert exc.code() == grpc.StatusCode.INVALID_ARGUMENT, (
                        height, width, tile_size, exc.details())
                else:
                    assert (response.height_px, response.width_px) == (height, width)

"""Odd but valid requests: each either succeeds or is refused as the caller's fault
(INVALID_ARGUMENT), never an internal error, now that only InvalidInput is the caller's."""

from __future__ import annotations

import grpc
import numpy as np
import pytest

from scene.segment.v1 import segment_pb2
from scene_rpc.images import image_message

SIZES = [(8, 8), (8, 300), (300, 8), (9, 17), (40, 80), (80, 40)]


@pytest.mark.parametrize("mode", [segment_pb2.SEGMENT_MODE_SEMANTIC,
                                  segment_pb2.SEGMENT_MODE_HYBRID])
async def test_odd_shapes_never_fail_internally(serve, mode):
    served = await serve(crop_size_px=64)
    for height, width in SIZES:
        rgb = np.random.default_rng(height * width).integers(0, 255, (height, width, 3),
                                                              dtype=np.uint8)
        for panorama in (False, True):
            request = segment_pb2.SegmentRequest(image=image_message(rgb), mode=mode,
                                                 panorama=panorama)
            try:
                response = await served.stub.Segment(request)
            except grpc.aio.AioRpcError as exc:
                assert exc.code() == grpc.StatusCode.INVALID_ARGUMENT, (
                    height, width, panorama, exc.details())
            else:
                assert (response.height_px, response.width_px) == (height, width)

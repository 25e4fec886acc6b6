from __future__ import annotations

from depth_service.servicer import options_from_request
from depth_service.settings import Settings
from scene.depth.v1 import depth_pb2


def test_the_input_cap_is_the_request_s_else_the_service_default(monkeypatch):
    monkeypatch.setenv("DEPTH_MAX_INPUT_SIDE_PX", "1024")
    settings = Settings()
    assert settings.max_input_side_px == 1024
    request = depth_pb2.EstimateDepthRequest()
    assert options_from_request(request, settings).max_input_side == 1024
    request.max_input_side_px = 512
    assert options_from_request(request, settings).max_input_side == 512
    assert options_from_request(depth_pb2.EstimateDepthRequest(), Settings(
        max_input_side_px=0)).max_input_side == 0

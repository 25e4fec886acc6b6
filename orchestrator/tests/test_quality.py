"""Per-request quality: the field on /generate and /jobs (JSON and multipart), its record, and the
knobs it sets on the gRPC requests, seen by the fake model services."""

from __future__ import annotations

import pytest

from orchestrator.quality import QUALITIES, QUALITY_KNOBS
from pointcloud import decode
from scene.depth.v1 import depth_pb2
from scene.segment.v1 import segment_pb2


def last_requests(api):
    depth = api.fakes.depth.calls_to("StreamEstimateDepth")[-1].request
    segment = api.fakes.segment.calls_to("StreamSegment")[-1].request
    return depth, segment


@pytest.mark.parametrize("quality", QUALITIES)
async def test_each_quality_sends_its_knobs_to_both_services_and_is_recorded(api, quality):
    # edges=keep: every pixel becomes a point, so the count shows the stride alone.
    response = await api.upload("/generate", api.png(80, 60), quality=quality, edges="keep")
    assert response.status_code == 200, response.text
    knobs = QUALITY_KNOBS[quality]
    depth, segment = last_requests(api)
    assert depth.tiling == knobs.depth_tiling
    assert depth.max_input_side_px == segment.max_input_side_px == knobs.max_input_side_px
    assert segment.points_per_side == knobs.points_per_side
    assert segment.crop_points_per_side == knobs.crop_points_per_side
    assert segment.prompt_strategy == knobs.prompt_strategy
    assert segment.crop_mode == knobs.crop_mode
    if quality == "draft":
        assert segment.mode == segment_pb2.SEGMENT_MODE_SEMANTIC
    record = api.record(response.headers["x-generation-id"])
    assert record["quality"] == quality
    assert record["quality_knobs"]["max_input_side_px"] == knobs.max_input_side_px
    # Every pixel at stride 1; draft keeps every second row and column.
    assert len(decode(response.content)) == record["point_count"] == (
        80 * 60 if knobs.point_stride == 1 else 40 * 30)


async def test_the_default_is_standard_and_the_segment_mode_setting_still_applies(make_api):
    async with make_api(segment_mode="semantic") as api:
        response = await api.generate()
        assert response.status_code == 200, response.text
        depth, segment = last_requests(api)
        assert api.record(response.headers["x-generation-id"])["quality"] == "standard"
        # standard leaves tiling, density, crops and caps to the services (the profile's).
        assert depth.tiling == depth_pb2.TILING_MODE_UNSPECIFIED
        assert segment.points_per_side == 0 and depth.max_input_side_px == 0
        assert segment.prompt_strategy == segment_pb2.PROMPT_STRATEGY_SEMANTIC
        # standard asks for no mode: SEGMENT_MODE decides.
        assert segment.mode == segment_pb2.SEGMENT_MODE_SEMANTIC


async def test_panoramas_get_the_panorama_cap(api):
    response = await api.upload("/generate", api.png(128, 64), mode="panorama", quality="draft")
    assert response.status_code == 200, response.text
    depth, segment = last_requests(api)
    assert depth.max_input_side_px == QUALITY_KNOBS["draft"].panorama_max_input_side_px
    assert segment.max_input_side_px == depth.max_input_side_px


async def test_jobs_take_the_quality_in_json_and_multipart(api):
    response = await api.submit(quality="draft")
    assert response.status_code == 202, response.text
    job = await api.wait_status(response.json()["id"], "completed")
    assert job["quality"] == "draft"
    assert api.record(job["id"])["quality"] == "draft"
    response = await api.upload("/jobs", api.png(), quality="high")
    job = await api.wait_status(response.json()["id"], "completed")
    assert api.record(job["id"])["quality"] == "high"
    _, segment = last_requests(api)
    assert segment.prompt_strategy == segment_pb2.PROMPT_STRATEGY_GRID


@pytest.mark.parametrize("path", ["/generate", "/jobs"])
async def test_an_unknown_quality_is_a_422_naming_the_valid_values(api, path):
    for response in (
        await api.client.post(path, json={"prompt": "a cat", "quality": "ultra"},
                              headers={"X-OpenAI-Key": api.key}),
        await api.upload(path, api.png(), quality="ultra"),
    ):
        assert response.status_code == 422, response.text
        (error,) = response.json()["detail"]
        assert error["loc"][-1] == "quality"
        assert all(f"'{q}'" in error["msg"] for q in QUALITIES), error["msg"]
    assert not api.fakes.segment.calls_to("StreamSegment")


async def test_the_same_idempotency_key_with_another_quality_is_a_conflict(api):
    first = await api.submit(headers={"Idempotency-Key": "k1"}, quality="draft")
    assert first.status_code == 202
    again = await api.submit(headers={"Idempotency-Key": "k1"}, quality="draft")
    assert again.json()["id"] == first.json()["id"]
    other = await api.submit(headers={"Idempotency-Key": "k1"}, quality="high")
    assert other.status_code == 422, other.text
    assert "different request" in other.json()["detail"]

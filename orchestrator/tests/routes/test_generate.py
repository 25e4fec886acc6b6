"""POST /generate: the synchronous pipeline, its inputs, outputs and errors."""

from __future__ import annotations

import asyncio
import json
import time

import grpc
import numpy as np
import pytest

from pointcloud import decode


async def test_prompt_returns_a_decodable_cloud_and_stores_the_generation(api):
    response = await api.generate("a red ball on a lawn", vibe="dreamy")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/octet-stream"
    generation_id = response.headers["x-generation-id"]
    cloud = decode(response.content)
    assert len(cloud) == 96 * 64  # the fake imagegen's image, stride 1
    timing = response.headers["server-timing"]
    for step in ("imagegen", "depth", "segment", "pointcloud", "png", "storage", "total"):
        assert f"{step};dur=" in timing

    assert api.files_in(api.folder(generation_id)) == [
        "depth.png", "image.png", "metadata.json", "pointcloud.bin", "segments.png"]
    record = api.record(generation_id)
    assert record["status"] == "completed"
    assert record["prompt"] == "a red ball on a lawn" and record["vibe"] == "dreamy"
    assert record["source"] == "prompt" and record["mode"] == "standard"
    assert record["image"] == {"width": 96, "height": 64}
    assert record["point_count"] == 96 * 64
    assert record["models"] == {"imagegen": "fake-image-1", "depth": "fake/depth", "sam": None,
                                "semantic": "fake/semantic"}
    assert record["revised_prompt"] == "revised: a red ball on a lawn"
    assert record["services"]["depth"] == {"address": api.fakes.depth.address,
                                           "version": "fake-0"}
    assert {label["label"] for label in record["labels"]} >= {"sky", "floor"}
    assert record["depth_is_metric"] is False and record["focal_length_px"] is None
    assert set(record["timing_ms"]) >= {"imagegen", "depth", "segment", "models", "pointcloud",
                                        "png", "storage", "total", "queue"}
    # The stored binary is the one that was returned.
    assert (api.folder(generation_id) / "pointcloud.bin").read_bytes() == response.content

    # The services saw the generation's id, and the key reached imagegen (only).
    (imagegen_call,) = api.fakes.imagegen.calls
    assert imagegen_call.request.openai_api_key == api.key
    assert imagegen_call.request.vibe == "dreamy"
    assert api.fakes.depth.calls[0].request_id == generation_id
    assert api.fakes.segment.calls[0].request_id == generation_id
    assert api.fakes.depth.calls[0].method == "StreamEstimateDepth"
    assert api.fakes.segment.calls[0].method == "StreamSegment"


@pytest.mark.parametrize("how", ["bearer", "body"])
async def test_the_key_may_come_as_a_bearer_token_or_in_the_body(api, how):
    if how == "bearer":
        response = await api.client.post("/generate", json={"prompt": "p"},
                                          headers={"Authorization": f"Bearer {api.key}"})
    else:
        response = await api.client.post("/generate",
                                          json={"prompt": "p", "openai_api_key": api.key})
    assert response.status_code == 200, response.text
    assert api.fakes.imagegen.calls[0].request.openai_api_key == api.key


async def test_upload_skips_image_generation(api):
    image = api.png(120, 90)
    response = await api.upload("/generate", image, vibe="calm", edges="keep")
    assert response.status_code == 200, response.text
    assert len(decode(response.content)) == 120 * 90
    assert api.fakes.imagegen.calls == []
    record = api.record(response.headers["x-generation-id"])
    assert record["source"] == "upload" and record["prompt"] is None
    assert record["image"] == {"width": 120, "height": 90}
    assert "imagegen" not in record["timing_ms"]


async def test_a_real_jpeg_photo(api, shared_images):
    image = shared_images["indoor_room"].read_bytes()
    response = await api.client.post(
        "/generate", files={"image": ("room.jpg", image, "image/jpeg")}, data={"mode": "standard"})
    assert response.status_code == 200, response.text
    record = api.record(response.headers["x-generation-id"])
    assert len(decode(response.content)) == record["point_count"] > 0


async def test_quantized_variant_on_request(api):
    plain = await api.generate("same prompt")
    quantized = await api.client.post("/generate", params={"format": "quantized"},
                                      json={"prompt": "same prompt"},
                                      headers={"X-OpenAI-Key": api.key})
    assert quantized.status_code == 200, quantized.text
    assert len(quantized.content) < len(plain.content)
    a, b = decode(plain.content), decode(quantized.content)
    assert len(a) == len(b)
    # What is stored is the full-precision binary either way.
    stored = api.folder(quantized.headers["x-generation-id"]) / "pointcloud.bin"
    assert len(decode(stored.read_bytes())) == len(a)


async def test_metric_depth_and_focal_length_are_used(api):
    api.fakes.depth.behaviour.metric = True
    response = await api.generate()
    assert response.status_code == 200, response.text
    record = api.record(response.headers["x-generation-id"])
    assert record["depth_is_metric"] is True
    assert record["focal_length_px"] == pytest.approx(0.8 * 96)


async def test_a_field_of_view_from_the_depth_model_is_used(api):
    wide = decode((await api.generate("same")).content)
    api.fakes.depth.behaviour.fov_deg = 120.0
    response = await api.generate("same")
    assert api.record(response.headers["x-generation-id"])["fov_deg"] == 120.0
    # A wider view spreads the same depths further sideways.
    assert np.ptp(decode(response.content).positions[:, 0]) > np.ptp(wide.positions[:, 0])


async def test_panorama_prompt_builds_a_panorama_cloud(api):
    response = await api.generate("a canyon", mode="panorama")
    assert response.status_code == 200, response.text
    record = api.record(response.headers["x-generation-id"])
    assert record["image"] == {"width": 128, "height": 64}
    assert record["mode"] == "panorama"
    assert api.fakes.depth.calls[0].request.panorama is True
    assert api.fakes.segment.calls[0].request.panorama is True


async def test_panorama_upload_must_be_two_to_one(api):
    response = await api.upload("/generate", api.png(100, 60), mode="panorama")
    assert response.status_code == 400
    assert "2:1" in response.json()["detail"]
    assert (await api.upload("/generate", api.png(120, 60), mode="panorama")).status_code == 200


async def test_depth_and_segment_run_concurrently(api):
    # Long enough that the rest of a request (tens of ms) stays well inside the 30 % margin.
    api.fakes.depth.behaviour.delay_s = 2.0
    api.fakes.segment.behaviour.delay_s = 1.6
    started = time.perf_counter()
    response = await api.upload("/generate", api.png(64, 48))
    wall = time.perf_counter() - started
    assert response.status_code == 200, response.text
    record = api.record(response.headers["x-generation-id"])
    assert record["timing_ms"]["models"] < 1.3 * 2000
    assert wall < 1.3 * 2.0
    depth, segment = api.fakes.depth.calls[0], api.fakes.segment.calls[0]
    assert abs(depth.started_at - segment.started_at) < 0.2


async def test_progress_from_the_streams_is_recorded(api):
    api.fakes.depth.behaviour.progress_steps = 4
    response = await api.generate()
    assert response.status_code == 200
    record = api.record(response.headers["x-generation-id"])
    assert record["progress"] == 1.0


# -- input errors --------------------------------------------------------------------------


async def test_a_prompt_without_a_key_is_401_and_queues_nothing(api):
    response = await api.client.post("/generate", json={"prompt": "a cat"})
    assert response.status_code == 401
    assert "OpenAI API key" in response.json()["detail"]
    assert api.files_in(api.data_dir / "generations") == []


@pytest.mark.parametrize(("body", "field"), [
    ({"prompt": "a cat", "mode": "cube"}, "mode"),
    ({"vibe": "calm"}, "prompt"),
    ({"prompt": "   "}, "prompt"),
    ({"prompt": "a cat", "colour": "red"}, "colour"),
    ({"prompt": "x" * 5000}, "prompt"),
    ({"prompt": 42}, "prompt"),
])
async def test_invalid_fields_are_422_with_the_field(api, body, field):
    response = await api.client.post("/generate", json=body, headers={"X-OpenAI-Key": api.key})
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert any(error["loc"] == ["body", field] for error in detail), detail
    assert all("input" not in error for error in detail)


async def test_a_body_that_is_not_json_is_422(api):
    response = await api.client.post("/generate", content=b"{nope",
                                      headers={"Content-Type": "application/json"})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body"]


async def test_an_unknown_content_type_is_415(api):
    response = await api.client.post("/generate", content=b"a cat",
                                      headers={"Content-Type": "text/plain"})
    assert response.status_code == 415
    assert "multipart/form-data" in response.json()["detail"]


async def test_an_upload_without_an_image_field_is_422(api):
    response = await api.client.post("/generate", files={"photo": ("a.png", api.png())})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "image"]


@pytest.mark.parametrize(("content", "status", "words"), [
    (b"", 400, "empty"),
    (b"this is not an image at all", 400, "not a decodable image"),
    (b"\x89PNG\r\n\x1a\n" + b"\0" * 64, 400, "cannot be used"),
])
async def test_bad_uploads_are_400_with_a_reason(api, content, status, words):
    response = await api.upload("/generate", content)
    assert response.status_code == status, response.text
    assert words in response.json()["detail"]
    assert api.fakes.depth.calls == []


async def test_uploads_over_the_byte_limit_are_413(make_api):
    async with make_api(max_upload_bytes=20_000) as api:
        response = await api.upload("/generate", api.png(200, 200))
        assert response.status_code == 413
        assert "20000 bytes" in response.json()["detail"]
        # A body far over the limit is refused before it is read in full.
        response = await api.upload("/generate", b"\0" * 3_000_000)
        assert response.status_code == 413
        assert "over the limit" in response.json()["detail"]


async def test_uploads_over_the_pixel_limit_are_413(make_api):
    async with make_api(max_image_pixels=100 * 100) as api:
        response = await api.upload("/generate", api.png(101, 100))
        assert response.status_code == 413
        assert "10100 pixels" in response.json()["detail"]


# -- service errors ------------------------------------------------------------------------


def only_metadata(api, response) -> None:
    generation_id = response.headers["x-generation-id"]
    assert api.files_in(api.folder(generation_id)) == ["metadata.json"]
    record = api.record(generation_id)
    assert record["status"] == "failed"
    assert record["error"] == response.json()["detail"]
    assert record["error_status"] == response.status_code


async def test_a_service_that_is_down_is_503_naming_it(api):
    await api.fakes.segment.stop()
    response = await api.generate()
    assert response.status_code == 503
    detail = response.json()["detail"]
    assert "segment service" in detail and api.fakes.segment.address in detail
    assert response.headers["retry-after"]
    only_metadata(api, response)


async def test_a_failing_depth_call_cancels_the_segment_call(api):
    api.fakes.segment.behaviour.stall = True
    api.fakes.depth.behaviour.fail_code = grpc.StatusCode.INTERNAL
    api.fakes.depth.behaviour.fail_message = "CUDA on fire"
    response = await api.upload("/generate", api.png())
    assert response.status_code == 502
    assert "depth service" in response.json()["detail"]
    # The service's own words are about its insides: in the log, not the answer.
    assert "CUDA on fire" not in response.json()["detail"]
    await asyncio.wait_for(api.fakes.segment.calls[0].cancelled.wait(), 5)
    only_metadata(api, response)


async def test_a_passed_deadline_is_504(make_api):
    async with make_api(depth_call_deadline_s=0.3) as api:
        api.fakes.depth.behaviour.stall = True
        response = await api.generate()
        assert response.status_code == 504
        assert "depth service" in response.json()["detail"]
        assert "0.3 s" in response.json()["detail"]
        only_metadata(api, response)


async def test_a_service_dying_mid_call_is_an_error_naming_it(api):
    api.fakes.depth.behaviour.progress_steps = 3
    api.fakes.depth.behaviour.die_after_progress = 1
    response = await api.generate()
    assert response.status_code in (502, 503), response.text
    assert "depth service" in response.json()["detail"]
    only_metadata(api, response)


@pytest.mark.parametrize(("code", "status"), [
    (grpc.StatusCode.UNAUTHENTICATED, 401),
    (grpc.StatusCode.INVALID_ARGUMENT, 400),
    (grpc.StatusCode.RESOURCE_EXHAUSTED, 429),
])
async def test_openai_refusals_keep_their_meaning_and_message(api, code, status):
    api.fakes.imagegen.behaviour.fail_code = code
    api.fakes.imagegen.behaviour.fail_message = "OpenAI says: no thanks"
    response = await api.generate()
    assert response.status_code == status
    assert response.json()["detail"] == "OpenAI says: no thanks"
    assert api.fakes.depth.calls == []
    only_metadata(api, response)


async def test_an_invalid_image_from_a_service_is_400_for_uploads(api):
    api.fakes.depth.behaviour.fail_code = grpc.StatusCode.INVALID_ARGUMENT
    api.fakes.depth.behaviour.fail_message = "image is 8x8; too small for tiling"
    response = await api.upload("/generate", api.png())
    assert response.status_code == 400
    assert response.json()["detail"] == "image is 8x8; too small for tiling"


async def test_a_client_that_hangs_up_cancels_its_generation(api):
    api.fakes.depth.behaviour.stall = True
    api.fakes.segment.behaviour.stall = True
    request = asyncio.create_task(api.upload("/generate", api.png()))
    depth_call = await api.fakes.depth.wait_for_call()
    segment_call = await api.fakes.segment.wait_for_call()
    request.cancel()  # closes the connection
    await asyncio.wait_for(depth_call.cancelled.wait(), 5)
    await asyncio.wait_for(segment_call.cancelled.wait(), 5)
    generation_id = depth_call.request_id
    job = await api.wait_status(generation_id, "cancelled")
    assert job["error"] == "the client disconnected"
    assert api.files_in(api.folder(generation_id)) == ["metadata.json"]
    assert api.files_in(api.data_dir / "tmp") == []


async def test_the_queue_limit_answers_429_with_retry_after(make_api):
    async with make_api(max_concurrent_jobs=1, max_queued_jobs=1) as api:
        api.fakes.depth.behaviour.stall = True
        running = asyncio.create_task(api.generate("one"))
        await api.fakes.depth.wait_for_call()
        queued = asyncio.create_task(api.generate("two"))
        await api.wait_until(lambda: api.runtime.jobs.stats["queued"] == 1)
        response = await api.generate("three")
        assert response.status_code == 429
        assert int(response.headers["retry-after"]) >= 1
        assert "queue is full" in response.json()["detail"]
        for task in (running, queued):
            task.cancel()
        await asyncio.gather(running, queued, return_exceptions=True)


async def test_results_are_deterministic_for_the_same_inputs(api):
    first = decode((await api.generate("same")).content)
    second = decode((await api.generate("same")).content)
    np.testing.assert_array_equal(first.positions, second.positions)


async def test_grid_variant_by_query_and_by_accept(api):
    plain = decode((await api.generate("same prompt")).content)
    for params, headers in (({"format": "grid"}, {}),
                            ({}, {"Accept": "application/x-pcld-grid"})):
        response = await api.client.post("/generate", params=params, json={"prompt": "same prompt"},
                                         headers={"X-OpenAI-Key": api.key, **headers})
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "application/x-pcld-grid"
        grid = decode(response.content)
        assert grid.header["camera"]["model"] == "pinhole"
        assert grid.header["camera"]["focal_source"] in ("model", "default_fov")
        assert len(grid) == len(plain)  # nothing lost
        assert len(response.content) < len(plain.positions) * 16 / 4
        np.testing.assert_allclose(grid.positions, plain.positions, rtol=1e-3, atol=1e-6)
        # What is stored stays version 1.
        stored = api.folder(response.headers["x-generation-id"]) / "pointcloud.bin"
        assert decode(stored.read_bytes()).header["attributes"]


async def test_an_unknown_format_is_a_422_naming_the_valid_ones(api):
    response = await api.client.post("/generate", params={"format": "glbx"},
                                     json={"prompt": "x"}, headers={"X-OpenAI-Key": api.key})
    assert response.status_code == 422
    detail = json.dumps(response.json()["detail"])
    assert all(name in detail for name in ("float", "quantized", "grid"))

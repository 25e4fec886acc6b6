"""The service end to end: tiny real-architecture models loaded with from_pretrained, served on an
ephemeral port, called through the generated client."""

from __future__ import annotations

import asyncio
import logging
import shutil

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from PIL import Image

from scene.common.v1 import common_pb2
from scene.segment.v1 import segment_pb2
from scene_rpc.arrays import array_from_proto
from scene_rpc.images import image_message
from segment_service.categories import CATEGORY_BY_ADE20K_ID

STAGES = {"decode", "sam_encoder", "mask_decoding", "semantic", "fusion", "total"}


def _request(data: bytes, **fields) -> segment_pb2.SegmentRequest:
    return segment_pb2.SegmentRequest(image=common_pb2.Image(encoded=data), **fields)


def _check_response(response: segment_pb2.SegmentResponse, height: int, width: int) -> np.ndarray:
    categories = array_from_proto(response.categories, dtype=np.uint8, ndim=2)
    assert categories.shape == (height, width)
    assert (response.height_px, response.width_px) == (height, width)
    assert categories.max() <= 5
    fractions = [label.pixel_fraction for label in response.labels]
    assert fractions == sorted(fractions, reverse=True)
    assert sum(fractions) == pytest.approx(1.0, abs=1e-4)
    for label in response.labels:
        assert label.category == CATEGORY_BY_ADE20K_ID[label.ade20k_id]
        share = np.mean(categories == label.category)
        assert label.pixel_fraction <= share + 1e-6
    return categories


SERVICE = "scene.segment.v1.SegmentService"


async def _watch_until_serving(channel, service: str = "", timeout_s: float = 60) -> bool:
    """Follow the health Watch until SERVING; False on a timeout."""
    call = health_pb2_grpc.HealthStub(channel).Watch(
        health_pb2.HealthCheckRequest(service=service), timeout=timeout_s)
    try:
        async for reply in call:
            if reply.status == health_pb2.HealthCheckResponse.SERVING:
                return True
    except grpc.aio.AioRpcError as exc:
        if exc.code() != grpc.StatusCode.DEADLINE_EXCEEDED:
            raise
    finally:
        call.cancel()
    return False


async def test_a_failed_preload_is_not_ready_but_alive(serve, tmp_path):
    served = await serve(preload=True, sam_model=str(tmp_path / "no-such-model"))
    stub = health_pb2_grpc.HealthStub(served.channel)
    for _ in range(300):
        info = await served.stub.GetInfo(common_pb2.GetInfoRequest())
        if any(m.last_error for m in info.models):
            break
        await asyncio.sleep(0.1)
    not_serving = health_pb2.HealthCheckResponse.NOT_SERVING
    for name in ("", SERVICE):
        reply = await stub.Check(health_pb2.HealthCheckRequest(service=name))
        assert reply.status == not_serving
    reply = await stub.Check(health_pb2.HealthCheckRequest(service="liveness"))
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def _serving(served) -> int:
    stub = health_pb2_grpc.HealthStub(served.channel)
    response = await stub.Check(health_pb2.HealthCheckRequest(service=""))
    return response.status


@pytest.mark.parametrize("stem", ["animal_cat_chelsea", "indoor_room", "outdoor_colosseum_sky"])
async def test_segment_real_photos(serve, photo_bytes, photo_rgb, stem):
    served = await serve()
    height, width = photo_rgb(stem).shape[:2]
    response = await served.stub.Segment(_request(photo_bytes(stem)))
    _check_response(response, height, width)
    assert response.mode == segment_pb2.SEGMENT_MODE_HYBRID
    assert response.mask_count >= 1
    assert set(response.timing_ms) == STAGES
    assert response.timing_ms["total"] >= response.timing_ms["sam_encoder"]
    assert response.sam_model_id.endswith("sam2")
    assert response.semantic_model_id.endswith("maskformer")


async def test_modes(serve, photo_bytes):
    served = await serve()
    data = photo_bytes("animal_cat_chelsea")
    semantic = await served.stub.Segment(_request(data, mode=segment_pb2.SEGMENT_MODE_SEMANTIC))
    assert semantic.mode == segment_pb2.SEGMENT_MODE_SEMANTIC
    assert semantic.mask_count == 0 and semantic.sam_model_id == ""
    assert "sam_encoder" not in semantic.timing_ms
    sam = await served.stub.Segment(_request(data, mode=segment_pb2.SEGMENT_MODE_SAM))
    assert sam.mode == segment_pb2.SEGMENT_MODE_SAM and sam.mask_count >= 1
    _check_response(sam, 300, 451)


async def test_semantic_mode_never_loads_sam(serve, photo_bytes, tmp_path):
    served = await serve(mode="semantic", sam_model=str(tmp_path / "no-such-model"))
    response = await served.stub.Segment(_request(photo_bytes("animal_cat_chelsea")))
    assert response.mode == segment_pb2.SEGMENT_MODE_SEMANTIC
    info = await served.stub.GetInfo(common_pb2.GetInfoRequest())
    sam = next(m for m in info.models if m.role == "sam")
    assert not sam.loaded and sam.last_error == ""


@pytest.mark.parametrize(("mode", "loaded"), [("hybrid", {"sam", "semantic"}),
                                              ("semantic", {"semantic"})])
async def test_preload_loads_what_the_default_mode_needs(serve, mode, loaded):
    served = await serve(mode=mode, preload=True)
    # Ready once the preload is done, not before (readiness follows the models).
    assert await _watch_until_serving(served.channel, SERVICE)
    info = await served.stub.GetInfo(common_pb2.GetInfoRequest())
    assert {m.role for m in info.models if m.loaded} == loaded


async def test_stream_reports_progress_then_exactly_one_result(serve, photo_bytes):
    served = await serve(points_per_side=6, points_per_batch=4, crop_size_px=256)
    events = [e async for e in served.stub.StreamSegment(_request(photo_bytes("indoor_room")))]
    kinds = [e.WhichOneof("event") for e in events]
    assert kinds[-1] == "result" and kinds.count("result") == 1
    progress = [e.progress for e in events[:-1]]
    stages = {p.stage for p in progress}
    assert stages == {"semantic", "sam_encoder", "mask_decoding", "fusion"}
    fractions = [p.fraction for p in progress]
    assert fractions == sorted(fractions) and fractions[-1] == pytest.approx(1.0)
    decoding = [p for p in progress if p.stage == "mask_decoding"]
    assert decoding[-1].done == decoding[-1].total == len(decoding) > 9  # tiles add batches
    _check_response(events[-1].result, 1200, 800)


async def test_points_per_batch_defaults_to_small_batches_on_cpu(serve, photo_bytes):
    # The grid: its prompt count (16) is known in advance.
    served = await serve(points_per_batch=0, points_per_side=4, prompt_strategy="grid")
    events = [e async for e in served.stub.StreamSegment(
        _request(photo_bytes("animal_cat_chelsea")))]
    decoding = [e.progress for e in events if e.progress.stage == "mask_decoding"]
    assert decoding[-1].total == 16 // 4
    assert served.segmenter.points_per_batch() == 4


async def test_cancelling_a_stream_stops_the_work(serve, photo_bytes, caplog):
    caplog.set_level(logging.INFO, logger="segment_service.segmenter")
    # 512 batches of the grid (semantic prompts on the tiny model's map would be few).
    served = await serve(points_per_side=32, points_per_batch=2, prompt_strategy="grid")
    call = served.stub.StreamSegment(_request(photo_bytes("animal_cat_chelsea")))
    async for event in call:
        if event.progress.stage == "mask_decoding":
            break
    call.cancel()
    for _ in range(200):
        if "cancelled after" in caplog.text:
            break
        await asyncio.sleep(0.05)
    done, total = map(int, caplog.text.split("cancelled after ")[1].split()[0].split("/"))
    assert total == 512 and done < total
    # The service carries on.
    response = await served.stub.Segment(
        _request(photo_bytes("animal_cat_chelsea"), mode=segment_pb2.SEGMENT_MODE_SEMANTIC))
    assert response.height_px == 300
    assert await _serving(served) == health_pb2.HealthCheckResponse.SERVING


async def test_info_reports_both_models(serve, photo_bytes):
    served = await serve()
    info = await served.stub.GetInfo(common_pb2.GetInfoRequest())
    assert info.service == "scene.segment.v1.SegmentService"
    assert info.limits.max_image_pixels == served.segmenter.settings.max_pixels
    assert info.limits.max_message_bytes == served.segmenter.settings.max_message_bytes
    assert [m.role for m in info.models] == ["sam", "semantic"]
    assert not any(m.loaded for m in info.models)
    await served.stub.Segment(_request(photo_bytes("animal_cat_chelsea")))
    info = await served.stub.GetInfo(common_pb2.GetInfoRequest())
    for model in info.models:
        assert model.loaded and model.device == "cpu" and model.dtype == "float32"
        assert model.load_time_s > 0 and model.last_error == ""
        assert model.model_id == model.requested_model_id
    assert info.cpu_threads >= 1


def _huge_png(to_png) -> bytes:
    # 1-bit pixels compress to a few KB while the header claims 400 megapixels.
    return to_png(Image.new("1", (20000, 20000)))


@pytest.mark.parametrize(
    "make_request",
    [
        lambda to_png: _request(b""),
        lambda to_png: _request(b"definitely not an image"),
        lambda to_png: _request(to_png(Image.new("RGB", (1, 1)))),
        lambda to_png: _request(to_png(Image.new("RGB", (300, 200)))),  # over SEG_MAX_PIXELS
        lambda to_png: _request(_huge_png(to_png)),
        lambda to_png: segment_pb2.SegmentRequest(),
        lambda to_png: segment_pb2.SegmentRequest(image=image_message(np.zeros((20, 20, 3),
                                                                              np.uint8)),
                                                  mode=7),
    ],
    ids=["empty", "not-an-image", "1x1", "over-limit", "decompression-bomb", "no-image",
         "unknown-mode"],
)
async def test_bad_input_is_invalid_argument_and_the_service_stays_healthy(
    serve, to_png, make_request
):
    served = await serve(max_pixels=50_000)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await served.stub.Segment(make_request(to_png))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert await _serving(served) == health_pb2.HealthCheckResponse.SERVING


async def test_rgba_grayscale_and_raw_pixels_are_accepted(serve, to_png, photo_rgb):
    served = await serve()
    rgb = photo_rgb("animal_cat_chelsea")[:120, :160]
    for image in (Image.fromarray(rgb).convert("RGBA"), Image.fromarray(rgb).convert("L")):
        response = await served.stub.Segment(
            _request(to_png(image), mode=segment_pb2.SEGMENT_MODE_SEMANTIC))
        _check_response(response, 120, 160)
    response = await served.stub.Segment(segment_pb2.SegmentRequest(image=image_message(rgb)))
    _check_response(response, 120, 160)


async def test_panorama_requests(serve, photo_rgb):
    served = await serve()
    panorama = np.ascontiguousarray(np.asarray(
        Image.fromarray(photo_rgb("outdoor_colosseum_sky")).resize((512, 256))))
    response = await served.stub.Segment(
        segment_pb2.SegmentRequest(image=image_message(panorama), panorama=True))
    _check_response(response, 256, 512)
    assert response.mask_count >= 1


async def test_load_failure_is_reported_and_recovered(serve, photo_bytes, tiny_models_dir,
                                                      tmp_path):
    sam_dir = tmp_path / "sam2"
    served = await serve(sam_model=str(sam_dir))
    request = _request(photo_bytes("animal_cat_chelsea"))
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await served.stub.Segment(request)
    assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
    info = await served.stub.GetInfo(common_pb2.GetInfoRequest())
    sam = next(m for m in info.models if m.role == "sam")
    assert not sam.loaded and sam.last_error
    # Not ready after a failed load, until a load succeeds.
    assert await _serving(served) == health_pb2.HealthCheckResponse.NOT_SERVING

    shutil.copytree(tiny_models_dir / "sam2", sam_dir)
    response = await served.stub.Segment(request)
    assert response.mask_count >= 1
    info = await served.stub.GetInfo(common_pb2.GetInfoRequest())
    sam = next(m for m in info.models if m.role == "sam")
    assert sam.loaded and sam.last_error == ""
    assert await _watch_until_serving(served.channel, SERVICE)


async def test_segformer_serves_as_the_semantic_model(serve, photo_bytes, tiny_models_dir):
    served = await serve(semantic_model=str(tiny_models_dir / "segformer"))
    response = await served.stub.Segment(_request(photo_bytes("animal_cat_chelsea")))
    _check_response(response, 300, 451)
    assert response.semantic_model_id.endswith("segformer")


# Per-request quality knobs. A synthetic picture keeps these independent of the shared photos.


def _blocks(height: int = 96, width: int = 128) -> np.ndarray:
    rgb = np.zeros((height, width, 3), np.uint8)
    rgb[: height // 2] = (120, 170, 230)
    rgb[height // 2:] = (90, 120, 60)
    rgb[height // 3: 2 * height // 3, width // 4: width // 2] = (200, 40, 40)
    return rgb


async def test_prompt_count_follows_the_strategy_and_density(serve):
    served = await serve(points_per_side=8)
    image = image_message(_blocks())
    grid = await served.stub.Segment(segment_pb2.SegmentRequest(
        image=image, prompt_strategy=segment_pb2.PROMPT_STRATEGY_GRID))
    assert grid.prompt_count == 64
    denser = await served.stub.Segment(segment_pb2.SegmentRequest(
        image=image, prompt_strategy=segment_pb2.PROMPT_STRATEGY_GRID, points_per_side=10))
    assert denser.prompt_count == 100
    semantic = await served.stub.Segment(segment_pb2.SegmentRequest(
        image=image, prompt_strategy=segment_pb2.PROMPT_STRATEGY_SEMANTIC))
    assert 1 <= semantic.prompt_count <= 64
    default = await served.stub.Segment(segment_pb2.SegmentRequest(image=image))
    assert default.prompt_count == semantic.prompt_count  # SEG_PROMPT_STRATEGY=semantic
    only_semantic = await served.stub.Segment(segment_pb2.SegmentRequest(
        image=image, mode=segment_pb2.SEGMENT_MODE_SEMANTIC))
    assert only_semantic.prompt_count == 0
    for response in (grid, semantic):
        _check_response(response, 96, 128)


async def test_the_input_cap_downscales_and_answers_at_full_size(serve):
    served = await serve(points_per_side=2, crop_size_px=64, crop_points_per_side=2,
                         prompt_strategy="grid")
    image = image_message(_blocks(96, 160))
    tiled = await served.stub.Segment(segment_pb2.SegmentRequest(image=image))
    assert tiled.prompt_count > 4  # the whole image plus tiles
    capped = await served.stub.Segment(segment_pb2.SegmentRequest(image=image,
                                                                  max_input_side_px=64))
    assert capped.prompt_count == 4  # 64 px: one crop, no tiles
    assert "resize" in capped.timing_ms
    categories = _check_response(capped, 96, 160)
    # Nearest upscaling: categories stay whole numbers of the six, no blends between them.
    assert set(np.unique(categories)) <= set(range(6))
    untiled = await served.stub.Segment(segment_pb2.SegmentRequest(
        image=image, crop_mode=segment_pb2.CROP_MODE_OFF))
    assert untiled.prompt_count == 4
    _check_response(untiled, 96, 160)


@pytest.mark.parametrize(
    "fields",
    [dict(points_per_side=-1), dict(points_per_side=129), dict(crop_points_per_side=1000),
     dict(prompt_strategy=9), dict(crop_mode=5), dict(max_input_side_px=-5),
     dict(max_input_side_px=10)],
    ids=["negative-points", "too-many-points", "too-many-crop-points", "unknown-strategy",
         "unknown-crop-mode", "negative-cap", "tiny-cap"],
)
async def test_bad_knobs_are_invalid_argument(serve, fields):
    served = await serve()
    request = segment_pb2.SegmentRequest(image=image_message(_blocks()), **fields)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await served.stub.Segment(request)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert await _serving(served) == health_pb2.HealthCheckResponse.SERVING

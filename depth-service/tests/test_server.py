"""The gRPC service end to end: a real server on an ephemeral port, tiny real-architecture models
loaded through the production path, called through the generated client."""

from __future__ import annotations

import asyncio
import io
import shutil
import struct
import time
import zlib
from pathlib import Path

import grpc
import numpy as np
import pytest
import pytest_asyncio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from PIL import Image

from depth_service.backends import load_backend
from depth_service.servicer import SERVICE_NAME
from scene.common.v1 import common_pb2
from scene.depth.v1 import depth_pb2
from scene_rpc.arrays import array_from_proto, array_to_proto
from scene_rpc.images import image_message

pytestmark = pytest.mark.asyncio(loop_scope="module")

MAX_PIXELS = 2_000_000


def encoded(image: Image.Image, image_format: str = "PNG", **save_args) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=image_format, **save_args)
    return buffer.getvalue()


def request_for(data: bytes, **fields) -> depth_pb2.EstimateDepthRequest:
    return depth_pb2.EstimateDepthRequest(image=common_pb2.Image(encoded=data), **fields)


def png_claiming(width: int, height: int) -> bytes:
    """A few hundred bytes whose header claims width x height pixels: a decompression bomb."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        body = kind + payload
        return struct.pack(">I", len(payload)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\x00" * 4096, 9)) + chunk(b"IEND", b""))


def normalized_of(response: depth_pb2.EstimateDepthResponse) -> np.ndarray:
    return array_from_proto(response.normalized_depth, dtype=np.float32, ndim=2)


SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


async def watch_until(channel: grpc.aio.Channel, wanted: int, service: str = "",
                      timeout_s: float = 30) -> list[int]:
    """Statuses a health Watch reports until ``wanted`` (all of them, in order)."""
    seen = []
    call = health_pb2_grpc.HealthStub(channel).Watch(
        health_pb2.HealthCheckRequest(service=service), timeout=timeout_s)
    async for reply in call:
        seen.append(reply.status)
        if reply.status == wanted:
            call.cancel()
            break
    return seen


async def health_status(channel: grpc.aio.Channel, service: str = "") -> int:
    stub = health_pb2_grpc.HealthStub(channel)
    response = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
    return response.status


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def server(serve, settings_factory, tiny_depth_anything):
    settings = settings_factory(model=tiny_depth_anything, max_pixels=MAX_PIXELS)
    async with serve(settings) as running:
        yield running


@pytest.fixture(scope="module")
def cat_png(shared_images) -> bytes:
    return shared_images["animal_cat_chelsea"].read_bytes()


async def test_health_and_reflection(server):
    serving = health_pb2.HealthCheckResponse.SERVING
    assert await health_status(server.channel) == serving
    assert await health_status(server.channel, SERVICE_NAME) == serving
    stub = reflection_pb2_grpc.ServerReflectionStub(server.channel)
    responses = stub.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
    names = {service.name async for response in responses
             for service in response.list_services_response.service}
    assert {SERVICE_NAME, "grpc.health.v1.Health"} <= names


async def test_real_photos_give_full_resolution_normalized_depth(server, shared_images):
    for name, path in shared_images.items():
        response = await server.stub.EstimateDepth(request_for(path.read_bytes(),
                                                                request_id=name))
        width, height = Image.open(path).size
        assert (response.width_px, response.height_px) == (width, height), name
        depth = normalized_of(response)
        assert depth.shape == (height, width)
        assert depth.min() >= 0.0 and depth.max() <= 1.0 and np.isfinite(depth).all()
        assert response.model_id == server.model.settings.model
        # Depth Anything is relative: no metric depth, no focal length, never invented.
        assert not response.HasField("depth_m")
        assert not response.HasField("focal_length_px")
        assert not response.HasField("horizontal_fov_deg")
        assert {"decode", "global_pass", "total"} <= set(response.timing_ms)


async def test_exif_orientation_is_applied(server, shared_images):
    cat = Image.open(shared_images["animal_cat_chelsea"]).convert("RGB")  # 451 x 300
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: displayed rotated 90 degrees clockwise
    response = await server.stub.EstimateDepth(request_for(encoded(cat, "JPEG", exif=exif)))
    assert (response.width_px, response.height_px) == (300, 451)
    assert normalized_of(response).shape == (451, 300)


@pytest.mark.parametrize("mode", ["L", "RGBA", "LA", "P"])
async def test_grayscale_alpha_and_palette_images_are_converted(server, cat_png, mode):
    image = Image.open(io.BytesIO(cat_png)).convert(mode)
    response = await server.stub.EstimateDepth(request_for(encoded(image)))
    assert normalized_of(response).shape == (300, 451)


async def test_raw_rgb_pixels_are_accepted(server, fakes):
    rgb = fakes.smooth_field(70, 90)
    response = await server.stub.EstimateDepth(
        depth_pb2.EstimateDepthRequest(image=image_message(rgb)))
    assert normalized_of(response).shape == (70, 90)


BAD_INPUTS = {
    "empty bytes": (lambda: request_for(b""), "empty"),
    "not an image": (lambda: request_for(b"certainly not an image"), "not a decodable image"),
    "1x1 image": (lambda: request_for(encoded(Image.new("RGB", (1, 1)))), "at least 8 pixels"),
    "over the pixel limit": (lambda: request_for(encoded(Image.new("RGB", (2000, 1001)))),
                             "over the limit"),
    "decompression bomb": (lambda: request_for(png_claiming(200_000, 200_000)),
                           "over the limit"),
    "truncated file": (lambda: request_for(encoded(Image.new("RGB", (64, 64), "red"),
                                                   "JPEG")[:300]), "corrupt or truncated"),
    "no image": (lambda: depth_pb2.EstimateDepthRequest(), "no image"),
    "raw pixels of the wrong shape": (
        lambda: depth_pb2.EstimateDepthRequest(image=common_pb2.Image(
            rgb=array_to_proto(np.zeros((16, 16, 4), np.uint8)))), "raw image"),
    "tiny tile size": (lambda: request_for(encoded(Image.new("RGB", (64, 64))), tile_size_px=4),
                       "tile size"),
    "negative input cap": (lambda: request_for(encoded(Image.new("RGB", (64, 64))),
                                               max_input_side_px=-1), "max input side"),
    "overlap too large": (lambda: request_for(encoded(Image.new("RGB", (64, 64))),
                                              tile_overlap_fraction=0.9), "overlap"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
async def test_bad_input_is_invalid_argument_and_the_service_stays_healthy(server, cat_png, case):
    make_request, message = BAD_INPUTS[case]
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await server.stub.EstimateDepth(make_request())
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in raised.value.details()
    assert await health_status(server.channel) == health_pb2.HealthCheckResponse.SERVING
    response = await server.stub.EstimateDepth(
        request_for(cat_png, tiling=depth_pb2.TILING_MODE_OFF))
    assert response.width_px == 451


async def test_stream_reports_progress_then_exactly_one_result(server, cat_png):
    events = [event async for event in server.stub.StreamEstimateDepth(
        request_for(cat_png, tiling=depth_pb2.TILING_MODE_FORCED, tile_size_px=128))]
    kinds = [event.WhichOneof("event") for event in events]
    assert kinds[-1] == "result" and kinds.count("result") == 1
    progress = [event.progress for event in events[:-1]]
    assert progress[0].stage == "global_pass"
    assert {p.stage for p in progress[1:]} == {"tiles"}
    assert progress[-1].done == progress[-1].total == events[-1].result.tile_count > 1
    fractions = [p.fraction for p in progress]
    assert fractions == sorted(fractions) and fractions[-1] == pytest.approx(1.0)


async def test_tiling_follows_the_request_flags(server, shared_images):
    data = shared_images["outdoor_colosseum_sky"].read_bytes()
    off = await server.stub.EstimateDepth(request_for(data, tiling=depth_pb2.TILING_MODE_OFF))
    auto = await server.stub.EstimateDepth(request_for(data))  # 1200 px >> native 56 px
    forced = await server.stub.EstimateDepth(request_for(
        data, tiling=depth_pb2.TILING_MODE_FORCED, tile_size_px=400,
        tile_overlap_fraction=0.5))
    assert off.tile_count == 0 and "tiles" not in off.timing_ms
    assert 1 < auto.tile_count <= server.model.settings.tile_max_count
    # Stride 400 - 0.5 x 400 = 200: ceil((1200 - 400) / 200) + 1 by ceil((875 - 400) / 200) + 1.
    assert forced.tile_count == 5 * 4
    assert {"tiles", "blend"} <= set(forced.timing_ms)


async def test_an_input_cap_makes_fewer_tiles_and_keeps_the_input_size(server, shared_images):
    data = shared_images["outdoor_colosseum_sky"].read_bytes()
    full = await server.stub.EstimateDepth(request_for(data))
    capped = await server.stub.EstimateDepth(request_for(data, max_input_side_px=120))
    assert (capped.width_px, capped.height_px) == (full.width_px, full.height_px) == (1200, 875)
    assert normalized_of(capped).shape == (875, 1200)
    assert 0 < capped.tile_count < full.tile_count
    assert "downscale" in capped.timing_ms and "downscale" not in full.timing_ms


async def test_panorama_request(server, fakes):
    rgb = fakes.smooth_field(100, 200, periodic=True)
    response = await server.stub.EstimateDepth(depth_pb2.EstimateDepthRequest(
        image=image_message(rgb), panorama=True, tiling=depth_pb2.TILING_MODE_FORCED,
        tile_size_px=64))
    assert response.tile_count >= 3 and normalized_of(response).shape == (100, 200)


async def test_info_reports_the_loaded_model(server, cat_png):
    await server.stub.EstimateDepth(request_for(cat_png))
    info = await server.stub.GetInfo(common_pb2.GetInfoRequest())
    assert info.service == "scene.depth.v1.DepthService" == SERVICE_NAME
    assert info.version and info.cpu_threads == 2
    assert info.limits.max_image_pixels == MAX_PIXELS
    assert info.limits.max_message_bytes == server.model.settings.max_message_bytes
    assert (info.limits.max_prompt_chars, info.limits.max_vibe_chars) == (0, 0)
    [model] = info.models
    assert model.role == "depth" and model.loaded and not model.fallback and not model.loading
    assert model.model_id == model.requested_model_id == server.model.settings.model
    assert (model.device, model.dtype, model.last_error) == ("cpu", "float32", "")


async def test_depth_pro_gives_metric_depth_and_focal_length(serve, settings_factory,
                                                             tiny_depth_pro, cat_png):
    async with serve(settings_factory(model=tiny_depth_pro)) as running:
        response = await running.stub.EstimateDepth(request_for(cat_png))
        depth_m = array_from_proto(response.depth_m, dtype=np.float32, ndim=2)
        assert depth_m.shape == (300, 451) and (depth_m > 0).all()
        assert response.HasField("focal_length_px") and response.focal_length_px > 0
        assert 0 < response.horizontal_fov_deg < 180
        expected = 0.5 * 451 / np.tan(np.radians(response.horizontal_fov_deg) / 2)
        assert response.focal_length_px == pytest.approx(expected, rel=1e-4)

        panorama = await running.stub.EstimateDepth(request_for(cat_png, panorama=True))
        assert panorama.HasField("depth_m") and not panorama.HasField("focal_length_px")


async def test_eight_concurrent_first_requests_load_the_model_once(serve, settings_factory,
                                                                   tiny_depth_anything, cat_png):
    loads = []

    def slow_loader(model_id, device, dtype):
        loads.append(model_id)
        time.sleep(0.3)  # keep the load in progress while every request arrives
        return load_backend(model_id, device, dtype)

    async with serve(settings_factory(model=tiny_depth_anything), loader=slow_loader) as running:
        info = await running.stub.GetInfo(common_pb2.GetInfoRequest())
        assert not info.models[0].loaded
        responses = await asyncio.gather(*(running.stub.EstimateDepth(request_for(cat_png))
                                           for _ in range(8)))
        assert loads == [tiny_depth_anything]
        assert all(response.width_px == 451 for response in responses)
        info = await running.stub.GetInfo(common_pb2.GetInfoRequest())
        assert info.models[0].loaded


async def test_a_failed_load_is_reported_then_retried_on_a_later_request(
        serve, settings_factory, tiny_depth_anything, cat_png, tmp_path: Path):
    model_dir = tmp_path / "model"
    async with serve(settings_factory(model=str(model_dir))) as running:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await running.stub.EstimateDepth(request_for(cat_png))
        assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "could not be loaded" in raised.value.details()
        assert str(model_dir) in raised.value.details()
        [model] = (await running.stub.GetInfo(common_pb2.GetInfoRequest())).models
        assert not model.loaded and str(model_dir) in model.last_error
        # Not ready (no traffic should come here) but alive (no restart needed).
        for name in ("", SERVICE_NAME):
            assert await health_status(running.channel, name) == NOT_SERVING
        assert await health_status(running.channel, "liveness") == SERVING

        shutil.copytree(tiny_depth_anything, model_dir)  # the weights arrive
        response = await running.stub.EstimateDepth(request_for(cat_png))
        assert response.width_px == 451
        [model] = (await running.stub.GetInfo(common_pb2.GetInfoRequest())).models
        assert model.loaded and model.last_error == ""
        for name in ("", SERVICE_NAME, "liveness"):
            assert await health_status(running.channel, name) == SERVING


async def test_a_failed_load_is_retried_in_the_background_without_requests(
        serve, settings_factory, fakes):
    attempts = []

    def flaky_loader(*_):
        attempts.append(time.monotonic())
        if len(attempts) == 1:
            raise OSError("weights not there yet")
        return fakes.DepthBackend()

    settings = settings_factory(preload=True, load_retry_s=0.2)
    async with serve(settings, loader=flaky_loader) as running:
        statuses = await watch_until(running.channel, SERVING)
        # The preload failed (NOT_SERVING), then the retry nobody asked for succeeded.
        assert statuses[-1] == SERVING and NOT_SERVING in statuses
        assert len(attempts) == 2 and running.model.ready


async def test_preloading_is_not_ready_until_the_model_is_loaded(
        serve, settings_factory, fakes):
    release = asyncio.Event()
    loop = asyncio.get_running_loop()

    def slow_loader(*_):
        asyncio.run_coroutine_threadsafe(release.wait(), loop).result(timeout=30)
        return fakes.DepthBackend()

    async with serve(settings_factory(preload=True), loader=slow_loader) as running:
        for name in ("", SERVICE_NAME):
            assert await health_status(running.channel, name) == NOT_SERVING
        assert await health_status(running.channel, "liveness") == SERVING
        info = await running.stub.GetInfo(common_pb2.GetInfoRequest())
        assert info.models[0].loading and not info.models[0].loaded
        release.set()
        await watch_until(running.channel, SERVING)
        assert await health_status(running.channel, SERVICE_NAME) == SERVING


async def test_a_lazy_service_is_ready_before_its_first_request(serve, settings_factory, fakes):
    async with serve(settings_factory(preload=False), loader=lambda *_: fakes.DepthBackend()
                     ) as running:
        for name in ("", SERVICE_NAME, "liveness"):
            assert await health_status(running.channel, name) == SERVING
        assert not running.model.ready


async def test_an_internal_error_is_internal_with_nothing_of_its_text(
        serve, settings_factory, fakes, cat_png, caplog):
    class BrokenBackend(fakes.DepthBackend):
        def predict(self, images):
            raise ValueError("operands could not be broadcast together with shapes (3,) (4,)")

    async with serve(settings_factory(), loader=lambda *_: BrokenBackend()) as running:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await running.stub.EstimateDepth(request_for(cat_png))
        assert raised.value.code() == grpc.StatusCode.INTERNAL
        details = raised.value.details()
        assert "internal error in scene.depth.v1.DepthService; see its log" in details
        assert "broadcast" not in details and "ValueError" not in details
        # The traceback is in the log, under the id the caller was given.
        error_id = details.rsplit("error id ", 1)[1].rstrip(")")
        [record] = [r for r in caplog.records if error_id in r.getMessage()]
        assert record.exc_info and "broadcast" in str(record.exc_info[1])
        # A bad image is still the caller's fault.
        with pytest.raises(grpc.aio.AioRpcError) as bad:
            await running.stub.EstimateDepth(request_for(b"not an image"))
        assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_within_the_retry_interval_a_failure_is_answered_from_memory(
        serve, settings_factory, cat_png, tmp_path: Path):
    settings = settings_factory(model=str(tmp_path / "missing"), load_retry_s=600)
    async with serve(settings) as running:
        for expected in ("could not be loaded", "retrying after 600s"):
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await running.stub.EstimateDepth(request_for(cat_png))
            assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
            assert expected in raised.value.details()


async def test_cancelling_a_stream_stops_the_work_and_health_answers_meanwhile(
        serve, settings_factory, fakes):
    backend = fakes.DepthBackend(native=32, delay_s=0.05)
    async with serve(settings_factory(), loader=lambda *_: backend) as running:
        call = running.stub.StreamEstimateDepth(depth_pb2.EstimateDepthRequest(
            image=image_message(fakes.smooth_field(200, 300)),
            tiling=depth_pb2.TILING_MODE_FORCED, tile_size_px=32))
        events = aiter(call)
        first = await anext(events)
        assert first.WhichOneof("event") == "progress"
        # A long inference does not block the event loop.
        assert await health_status(running.channel) == health_pb2.HealthCheckResponse.SERVING
        info = await running.stub.GetInfo(common_pb2.GetInfoRequest())
        assert info.models[0].loaded
        call.cancel()
        await asyncio.sleep(0.3)
        passes = len(backend.calls)
        await asyncio.sleep(0.3)
        assert len(backend.calls) == passes, "work went on after the cancellation"
        assert passes < 10, "cancelled long before the 33 passes of the whole request"

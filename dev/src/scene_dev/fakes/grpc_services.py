"""Fake model services: real ``grpc.aio`` servers implementing the depth, segment and imagegen
contracts with deterministic fake models.

They run the same server bootstrap as the real services (``scene_rpc.server``: error mapping,
health, reflection, message sizes), so a client cannot tell them apart except by the outputs.
Each fake has a mutable :class:`Behaviour` (model time, progress steps, injected errors, stalls,
dying mid-call) and a record of every call it received, including whether the caller cancelled.

In-process (fixtures)::

    async with FakeServices() as fakes:
        fakes.depth.behaviour.delay_s = 0.3
        settings = Settings(**fakes.settings_env())

As a process (the end-to-end benchmark)::

    python -m scene_dev.fakes.grpc_services --depth-port 50051 --segment-port 50052 \\
        --imagegen-port 50053 [--depth-delay 0.5] [--image-size 1024x1024]

Port 0 picks a free port; once serving, the process prints one JSON line with the ports.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import io
import json
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
import numpy as np
from PIL import Image

from scene.common.v1 import common_pb2
from scene.depth.v1 import depth_pb2, depth_pb2_grpc
from scene.imagegen.v1 import imagegen_pb2, imagegen_pb2_grpc
from scene.segment.v1 import segment_pb2, segment_pb2_grpc
from scene_rpc import server as rpc_server
from scene_rpc.arrays import array_to_proto
from scene_rpc.errors import InvalidInput, ServiceError
from scene_rpc.images import DEFAULT_MAX_IMAGE_PIXELS, decode_image

VERSION = "fake-0"
# What the real services advertise by default (GetInfo.limits; 0 = none): depth and segment
# their input pixels and message size, imagegen the caller's own prompt and vibe text and the
# pixels of the images it makes. Each fake enforces what it advertises, as the real ones do.
MAX_PIXELS = DEFAULT_MAX_IMAGE_PIXELS
DEFAULT_LIMITS = {
    "depth": {"max_image_pixels": MAX_PIXELS,
              "max_message_bytes": rpc_server.DEFAULT_MAX_MESSAGE_BYTES},
    "segment": {"max_image_pixels": MAX_PIXELS,
                "max_message_bytes": rpc_server.DEFAULT_MAX_MESSAGE_BYTES},
    "imagegen": {"max_prompt_chars": 4000, "max_vibe_chars": 300, "max_image_pixels": MAX_PIXELS,
                 "max_message_bytes": rpc_server.DEFAULT_MAX_MESSAGE_BYTES},
}

# (ADE20K id, label, audio category) per category, as the real fusion would report them.
FAKE_LABELS = {
    0: (12, "person", 0),
    1: (4, "tree", 1),
    2: (2, "sky", 2),
    3: (3, "floor", 3),
    4: (1, "building", 4),
    5: (0, "wall", 5),
}


@dataclass
class Behaviour:
    """What a fake does on its next calls. Tests change it freely between calls."""

    # Model time, spread evenly over the progress steps.
    delay_s: float = 0.0
    progress_steps: int = 2
    # Fail with this status after ``fail_after_progress`` progress events.
    fail_code: grpc.StatusCode | None = None
    fail_message: str = "injected failure"
    fail_after_progress: int = 0
    # Never answer: the call ends only when the caller cancels it or its deadline passes.
    stall: bool = False
    # Stop the whole server (as a crash would) after this many progress events.
    die_after_progress: int | None = None
    # Depth only: return metric depth and a focal length, as DepthPro does.
    metric: bool = False
    # Depth only: report this horizontal field of view (and no focal length).
    fov_deg: float | None = None


@dataclass
class CallRecord:
    method: str
    request: Any
    started_at: float = field(default_factory=time.monotonic)
    finished_at: float | None = None
    # "running", "ok", "error" or "cancelled".
    outcome: str = "running"
    cancelled: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def request_id(self) -> str:
        return getattr(self.request, "request_id", "")


# ---------------------------------------------------------------------------------------------
# Deterministic fake models


def fake_depth(rgb: np.ndarray) -> np.ndarray:
    """Normalised depth (1 = near): far at the top, near at the bottom, modulated by brightness."""
    h = rgb.shape[0]
    rows = np.linspace(0.1, 0.9, h, dtype=np.float32)[:, None]
    brightness = rgb.mean(axis=2, dtype=np.float32) * np.float32(0.1 / 255)
    return np.clip(rows + brightness, 0.0, 1.0).astype(np.float32)


def fake_metric(normalized: np.ndarray, width: int) -> tuple[np.ndarray, float]:
    depth_m = (1.0 + 9.0 * (1.0 - normalized)).astype(np.float32)
    return depth_m, 0.8 * width


def fake_categories(rgb: np.ndarray) -> np.ndarray:
    """Sky on top, ground at the bottom, subject (reddish) or structure in between."""
    h = rgb.shape[0]
    categories = np.full(rgb.shape[:2], 4, dtype=np.uint8)
    reddish = rgb[..., 0].astype(np.int16) > rgb[..., 2].astype(np.int16) + 16
    categories[reddish] = 0
    categories[: h // 3] = 2
    categories[h - h // 4:] = 3
    return categories


def fake_labels(categories: np.ndarray) -> list[segment_pb2.DetectedLabel]:
    counts = np.bincount(categories.ravel(), minlength=6)
    labels = []
    for category in np.argsort(-counts, kind="stable"):
        if counts[category] == 0:
            continue
        ade_id, name, cat = FAKE_LABELS[int(category)]
        labels.append(segment_pb2.DetectedLabel(
            ade20k_id=ade_id, label=name, category=cat,
            pixel_fraction=float(counts[category] / categories.size)))
    return labels


def fake_image(prompt: str, vibe: str, width: int, height: int) -> np.ndarray:
    """A smooth two-colour gradient with a reddish disc, seeded by the prompt."""
    seed = int.from_bytes(hashlib.sha256(f"{prompt}\0{vibe}".encode()).digest()[:8], "little")
    rng = np.random.default_rng(seed)
    top, bottom = rng.integers(0, 256, size=(2, 3)).astype(np.float32)
    t = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None]
    image = np.broadcast_to(top * (1 - t) + bottom * t, (height, width, 3)).copy()
    yy, xx = np.ogrid[:height, :width]
    disc = (yy - height * 0.55) ** 2 + (xx - width * 0.5) ** 2 < (min(width, height) * 0.2) ** 2
    image[disc] = (220, 60, 40)
    return image.astype(np.uint8)


def encode_png(rgb: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def progress(stage: str, done: int, total: int) -> common_pb2.Progress:
    return common_pb2.Progress(stage=stage, done=done, total=total, fraction=done / total)


# ---------------------------------------------------------------------------------------------
# Servicers


class FakeService:
    """Shared machinery: behaviour, call records, the server and its lifecycle."""

    name = "fake"
    model_id = "fake"

    def __init__(self) -> None:
        self.behaviour = Behaviour()
        # Advertised in GetInfo and enforced; tests may change it (or advertise=False: a
        # service from before the limits contract).
        self.limits = common_pb2.Limits(**DEFAULT_LIMITS[self.name])
        self.advertise_limits = True
        self.calls: list[CallRecord] = []
        self.server: grpc.aio.Server | None = None
        self.health = None
        self.port = 0

    def _register(self, server: grpc.aio.Server) -> None:
        raise NotImplementedError

    @property
    def full_name(self) -> str:
        raise NotImplementedError

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        self.server, self.health = rpc_server.build_server(
            service_names=[self.full_name], register=self._register)
        self.port = await rpc_server.start(self.server, self.health, f"{host}:{port}")
        self.address = f"{host}:{self.port}"
        return self.port

    async def stop(self, grace_s: float | None = 0) -> None:
        if self.server is not None:
            await self.server.stop(grace_s)
            self.server = None

    def reset(self) -> None:
        self.behaviour = Behaviour()
        self.limits = common_pb2.Limits(**DEFAULT_LIMITS[self.name])
        self.advertise_limits = True
        self.calls.clear()

    @property
    def max_pixels(self) -> int:
        return self.limits.max_image_pixels or 2**62

    def calls_to(self, method: str) -> list[CallRecord]:
        return [c for c in self.calls if c.method == method]

    async def wait_for_call(self, method: str | None = None, timeout_s: float = 5.0,
                            ) -> CallRecord:
        """The first call (to ``method``) received, waiting for it if need be."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for call in self.calls:
                if method is None or call.method == method:
                    return call
            await asyncio.sleep(0.01)
        raise TimeoutError(f"the fake {self.name} service received no {method or ''} call")

    async def _steps(self, record: CallRecord, stage: str) -> AsyncIterator[common_pb2.Progress]:
        """The model's progress events, with the behaviour's delays, failures and stalls."""
        behaviour = self.behaviour
        steps = max(1, behaviour.progress_steps)
        for done in range(1, steps + 1):
            if behaviour.die_after_progress is not None and done > behaviour.die_after_progress:
                await self._die()
            if behaviour.fail_code is not None and done > behaviour.fail_after_progress:
                raise ServiceError(behaviour.fail_code, behaviour.fail_message)
            if behaviour.stall:
                await asyncio.Event().wait()
            if behaviour.delay_s:
                await asyncio.sleep(behaviour.delay_s / steps)
            yield progress(stage, done, steps)
        if behaviour.die_after_progress is not None and behaviour.die_after_progress >= steps:
            await self._die()
        if behaviour.fail_code is not None:
            raise ServiceError(behaviour.fail_code, behaviour.fail_message)

    async def _die(self) -> None:
        # Stopping with no grace aborts every call in flight, this one included, as a crash would.
        self._dying = asyncio.get_running_loop().create_task(self.stop(0))
        await asyncio.Event().wait()

    async def _recorded(self, method: str, request, events: Callable[[CallRecord], AsyncIterator]):
        record = CallRecord(method, request)
        self.calls.append(record)
        try:
            async for event in events(record):
                yield event
        except asyncio.CancelledError:
            record.outcome = "cancelled"
            record.cancelled.set()
            raise
        except BaseException:
            record.outcome = "error"
            raise
        else:
            record.outcome = "ok"
        finally:
            record.finished_at = time.monotonic()

    async def _unary(self, method: str, request, events) -> Any:
        result = None
        async for event in self._recorded(method, request, events):
            if not isinstance(event, common_pb2.Progress):
                result = event
        return result

    def info(self) -> common_pb2.GetInfoResponse:
        info = common_pb2.GetInfoResponse(
            service=self.name, version=VERSION, cpu_threads=1,
            models=[common_pb2.ModelInfo(role=self.name, requested_model_id=self.model_id,
                                         model_id=self.model_id, loaded=True, device="cpu",
                                         dtype="float32")])
        if self.advertise_limits:
            info.limits.CopyFrom(self.limits)
        return info


class FakeDepthService(FakeService, depth_pb2_grpc.DepthServiceServicer):
    name = "depth"
    model_id = "fake/depth"

    @property
    def full_name(self) -> str:
        return depth_pb2.DESCRIPTOR.services_by_name["DepthService"].full_name

    def _register(self, server: grpc.aio.Server) -> None:
        depth_pb2_grpc.add_DepthServiceServicer_to_server(self, server)

    async def _events(self, record: CallRecord):
        started = time.perf_counter()
        request = record.request
        rgb = decode_image(request.image, max_pixels=self.max_pixels)
        async for event in self._steps(record, "tiles"):
            yield event
        normalized = fake_depth(rgb)
        h, w = normalized.shape
        response = depth_pb2.EstimateDepthResponse(
            normalized_depth=array_to_proto(normalized), model_id=self.model_id,
            width_px=w, height_px=h)
        if self.behaviour.metric:
            depth_m, focal = fake_metric(normalized, w)
            response.depth_m.CopyFrom(array_to_proto(depth_m))
            response.focal_length_px = focal
        elif self.behaviour.fov_deg is not None:
            response.horizontal_fov_deg = self.behaviour.fov_deg
        response.timing_ms["total"] = (time.perf_counter() - started) * 1000
        yield response

    async def EstimateDepth(self, request, context):
        return await self._unary("EstimateDepth", request, self._events)

    async def StreamEstimateDepth(self, request, context):
        async for event in self._recorded("StreamEstimateDepth", request, self._events):
            if isinstance(event, common_pb2.Progress):
                yield depth_pb2.EstimateDepthEvent(progress=event)
            else:
                yield depth_pb2.EstimateDepthEvent(result=event)

    async def GetInfo(self, request, context):
        return self.info()


class FakeSegmentService(FakeService, segment_pb2_grpc.SegmentServiceServicer):
    name = "segment"
    model_id = "fake/semantic"

    @property
    def full_name(self) -> str:
        return segment_pb2.DESCRIPTOR.services_by_name["SegmentService"].full_name

    def _register(self, server: grpc.aio.Server) -> None:
        segment_pb2_grpc.add_SegmentServiceServicer_to_server(self, server)

    async def _events(self, record: CallRecord):
        started = time.perf_counter()
        rgb = decode_image(record.request.image, max_pixels=self.max_pixels)
        async for event in self._steps(record, "semantic"):
            yield event
        categories = fake_categories(rgb)
        h, w = categories.shape
        response = segment_pb2.SegmentResponse(
            categories=array_to_proto(categories), labels=fake_labels(categories),
            mode=segment_pb2.SEGMENT_MODE_SEMANTIC, semantic_model_id=self.model_id,
            width_px=w, height_px=h)
        response.timing_ms["total"] = (time.perf_counter() - started) * 1000
        yield response

    async def Segment(self, request, context):
        return await self._unary("Segment", request, self._events)

    async def StreamSegment(self, request, context):
        async for event in self._recorded("StreamSegment", request, self._events):
            if isinstance(event, common_pb2.Progress):
                yield segment_pb2.SegmentEvent(progress=event)
            else:
                yield segment_pb2.SegmentEvent(result=event)

    async def GetInfo(self, request, context):
        return self.info()


class FakeImageGenService(FakeService, imagegen_pb2_grpc.ImageGenServiceServicer):
    name = "imagegen"
    model_id = "fake-image-1"

    def __init__(self, size: tuple[int, int] = (96, 64)) -> None:
        super().__init__()
        # (width, height) of standard images; panoramas are 2:1 at the same height.
        self.size = size
        self._cache: dict[tuple, bytes] = {}

    @property
    def full_name(self) -> str:
        return imagegen_pb2.DESCRIPTOR.services_by_name["ImageGenService"].full_name

    def _register(self, server: grpc.aio.Server) -> None:
        imagegen_pb2_grpc.add_ImageGenServiceServicer_to_server(self, server)

    def image_size(self, mode: int) -> tuple[int, int]:
        width, height = self.size
        if mode == imagegen_pb2.GENERATION_MODE_PANORAMA:
            width = 2 * height
        return width, height

    def png_for(self, prompt: str, vibe: str, mode: int) -> bytes:
        width, height = self.image_size(mode)
        key = (prompt, vibe, width, height)
        if key not in self._cache:
            self._cache[key] = encode_png(fake_image(prompt, vibe, width, height))
        return self._cache[key]

    async def _events(self, record: CallRecord):
        started = time.perf_counter()
        request = record.request
        if not request.openai_api_key:
            raise ServiceError(grpc.StatusCode.UNAUTHENTICATED, "no OpenAI API key was given")
        for name, text, limit in (("prompt", request.prompt, self.limits.max_prompt_chars),
                                  ("vibe", request.vibe, self.limits.max_vibe_chars)):
            if limit and len(text) > limit:
                raise InvalidInput(f"the {name} has {len(text)} characters; the limit is {limit}")
        async for event in self._steps(record, "openai"):
            yield event
        png = self.png_for(request.prompt, request.vibe, request.mode)
        width, height = self.image_size(request.mode)
        response = imagegen_pb2.GenerateImageResponse(
            image_png=png, width_px=width, height_px=height, prompt=request.prompt,
            vibe=request.vibe, prompt_sent=f"{request.prompt} ({request.vibe})",
            revised_prompt=f"revised: {request.prompt}", model_id=self.model_id)
        response.timing_ms["total"] = (time.perf_counter() - started) * 1000
        yield response

    async def GenerateImage(self, request, context):
        return await self._unary("GenerateImage", request, self._events)

    async def GetInfo(self, request, context):
        return self.info()


class FakeServices:
    """The three fakes together, started on free ports of ``host``."""

    def __init__(self, host: str = "127.0.0.1", image_size: tuple[int, int] = (96, 64)):
        self.host = host
        self.depth = FakeDepthService()
        self.segment = FakeSegmentService()
        self.imagegen = FakeImageGenService(image_size)

    @property
    def all(self) -> tuple[FakeService, ...]:
        return self.depth, self.segment, self.imagegen

    async def start(self, ports: dict[str, int] | None = None,
                    only: set[str] | None = None) -> FakeServices:
        """Start the fakes (those named in ``only``, if given) on ``ports`` (0 = free)."""
        ports = ports or {}
        for fake in self.all:
            if only is None or fake.name in only:
                await fake.start(self.host, ports.get(fake.name, 0))
        return self

    async def stop(self) -> None:
        await asyncio.gather(*(fake.stop(0) for fake in self.all))

    def reset(self) -> None:
        for fake in self.all:
            fake.reset()

    def addresses(self) -> dict[str, str]:
        """Settings values pointing the orchestrator at the fakes."""
        return {
            "depth_service_addr": self.depth.address,
            "segment_service_addr": self.segment.address,
            "imagegen_service_addr": self.imagegen.address,
        }

    async def __aenter__(self) -> FakeServices:
        return await self.start()

    async def __aexit__(self, *exc_info) -> None:
        await self.stop()


# ---------------------------------------------------------------------------------------------
# Process entry point


def _size(text: str) -> tuple[int, int]:
    width, _, height = text.lower().partition("x")
    return int(width), int(height)


async def _serve(args: argparse.Namespace) -> None:
    fakes = FakeServices(args.host, image_size=args.image_size)
    fakes.depth.behaviour.delay_s = args.depth_delay
    fakes.depth.behaviour.metric = args.metric_depth
    fakes.segment.behaviour.delay_s = args.segment_delay
    fakes.imagegen.behaviour.delay_s = args.imagegen_delay
    for setting in args.limit:
        target, _, value = setting.partition("=")
        service, _, field_name = target.partition(".")
        setattr(getattr(fakes, service).limits, field_name, int(value))
    only = set(args.services.split(","))
    await fakes.start({"depth": args.depth_port, "segment": args.segment_port,
                       "imagegen": args.imagegen_port}, only=only)
    print(json.dumps({fake.name: fake.port for fake in fakes.all if fake.name in only}),
          flush=True)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    await stopping.wait()
    await fakes.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m scene_dev.fakes.grpc_services",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--depth-port", type=int, default=50051)
    parser.add_argument("--segment-port", type=int, default=50052)
    parser.add_argument("--imagegen-port", type=int, default=50053)
    parser.add_argument("--depth-delay", type=float, default=0.0, help="model seconds per call")
    parser.add_argument("--segment-delay", type=float, default=0.0)
    parser.add_argument("--imagegen-delay", type=float, default=0.0)
    parser.add_argument("--metric-depth", action="store_true",
                        help="return metric depth and a focal length")
    parser.add_argument("--services", default="depth,segment,imagegen",
                        help="which fakes to run (comma-separated); one process per service "
                             "keeps their CPU work from queueing behind each other")
    parser.add_argument("--limit", action="append", default=[], metavar="SERVICE.FIELD=N",
                        help="advertise (and enforce) another limit, e.g. "
                             "depth.max_image_pixels=4096 or imagegen.max_vibe_chars=20")
    parser.add_argument("--image-size", type=_size, default=(1024, 1024),
                        help="WIDTHxHEIGHT of generated standard images (panoramas: 2H x H)")
    args = parser.parse_args(argv)
    try:
        asyncio.run(_serve(args))
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()

"""Fakes and fixtures of the depth-service tests.

Test modules cannot import each other under ``--import-mode=importlib``, so the fakes are handed
out by fixtures.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path

import grpc
import numpy as np
import pytest
import torch

from depth_service.backends import DepthBackend, Prediction
from depth_service.model import DepthModel
from depth_service.server import build
from depth_service.settings import Settings
from scene.depth.v1 import depth_pb2_grpc
from scene_rpc.server import message_size_options


class FakeDepthBackend(DepthBackend):
    """A deterministic stand-in for a relative-depth model.

    The "true" disparity of an image is its mean intensity, so a test controls the ground truth
    through the pixels it sends. Like a real model, it sees each input at its native resolution
    (area-resampled to ``native`` px on the short side) and, like a relative-depth model, gives
    every input its own unknown scale and shift (drawn from ``seed``). With ``metric`` the
    disparity is offered as inverse metres, so a test can read it back exactly from ``depth_m``.
    """

    def __init__(self, *, native: int = 32, seed: int = 0, distort: bool = True,
                 metric: bool = False, fov_deg: float | None = None, delay_s: float = 0.0,
                 model_id: str = "fake-depth") -> None:
        self.model_id = model_id
        self.native_hw = (native, native)
        self.metric = metric
        self.predicts_fov = fov_deg is not None
        self.device = "cpu"
        self.dtype = "float32"
        self.fov_deg = fov_deg
        self.distort = distort
        self.delay_s = delay_s
        self.rng = np.random.default_rng(seed)
        self.calls: list[int] = []  # batch size of each forward pass
        self.input_shapes: list[tuple[int, int]] = []  # (height, width) of every input seen
        self.active = 0
        self.max_active = 0
        self._lock = threading.Lock()

    def predict(self, images: Sequence[np.ndarray]) -> list[Prediction]:
        with self._lock:
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        try:
            if self.delay_s:
                time.sleep(self.delay_s)
            self.calls.append(len(images))
            self.input_shapes += [image.shape[:2] for image in images]
            return [self._predict_one(image) for image in images]
        finally:
            with self._lock:
                self.active -= 1

    def _predict_one(self, image: np.ndarray) -> Prediction:
        truth = image.astype(np.float32).mean(axis=2) / 255.0 + 1.0  # in [1, 2]
        height, width = truth.shape
        scale = self.native_hw[0] / min(height, width)
        size = (max(1, round(height * scale)), max(1, round(width * scale)))
        native = torch.nn.functional.interpolate(
            torch.from_numpy(truth)[None, None], size=size, mode="area"
        )[0, 0].numpy()
        if self.distort:
            native = self.rng.uniform(0.3, 3.0) * native + self.rng.uniform(0.0, 2.0)
        return Prediction(disparity=native, fov_deg=self.fov_deg)


class OutOfMemoryBackend(FakeDepthBackend):
    """Runs out of (GPU) memory on any batch larger than ``max_batch``."""

    def __init__(self, *, max_batch: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.max_batch = max_batch

    def predict(self, images: Sequence[np.ndarray]) -> list[Prediction]:
        if len(images) > self.max_batch:
            raise torch.OutOfMemoryError("CUDA out of memory (fake)")
        return super().predict(images)


def smooth_field(height: int, width: int, *, periodic: bool = False, seed: int = 0) -> np.ndarray:
    """A smooth uint8 RGB image whose intensity is a known disparity field: a gradient plus blobs.
    With ``periodic`` it is continuous across the left/right edges (a panorama)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    angle = 2 * np.pi * x / width
    field = 0.5 * y / height
    for _ in range(4):
        cy, cx = rng.uniform(0, height), rng.uniform(0, width)
        radius = rng.uniform(0.15, 0.3) * min(height, width)
        if periodic:
            # Distance measured around the cylinder, so the field wraps seamlessly.
            dx = width / (2 * np.pi) * np.angle(np.exp(1j * (angle - 2 * np.pi * cx / width)))
        else:
            dx = x - cx
        field += rng.uniform(0.3, 0.8) * np.exp(-((y - cy) ** 2 + dx**2) / (2 * radius**2))
    field = (field - field.min()) / (field.max() - field.min())
    gray = np.round(field * 255).astype(np.uint8)
    return np.repeat(gray[:, :, None], 3, axis=2)


@pytest.fixture(scope="session")
def fakes():
    """The fake classes and helpers, for test modules that cannot import this file."""

    class Fakes:
        DepthBackend = FakeDepthBackend
        OutOfMemoryBackend = OutOfMemoryBackend
        smooth_field = staticmethod(smooth_field)

    return Fakes


@pytest.fixture(scope="session")
def tiny_depth_anything(tiny_models_dir: Path) -> str:
    return str(tiny_models_dir / "depth-anything")


@pytest.fixture(scope="session")
def tiny_depth_pro(tiny_models_dir: Path) -> str:
    return str(tiny_models_dir / "depth-pro")


def make_settings(**overrides) -> Settings:
    """Test settings: no fallback unless asked, no retry back-off, tiny messages are plenty,
    eager PyTorch (the compiled runtimes have their own tests in test_backends.py), float32
    whatever the CPU (bfloat16 has its own tests there too)."""
    values = {"fallback_model": "", "load_retry_s": 0.0, "threads": 2, "port": 0,
              "host": "127.0.0.1", "runtime": "torch", "dtype": "float32"}
    values.update(overrides)
    return Settings(**values)


@pytest.fixture(scope="session")
def settings_factory() -> Callable[..., Settings]:
    return make_settings


class RunningServer:
    def __init__(self, model: DepthModel, stub, channel, health_servicer, port: int) -> None:
        self.model = model
        self.stub = stub
        self.channel = channel
        self.health_servicer = health_servicer
        self.port = port


@contextlib.asynccontextmanager
async def running_server(settings: Settings, *, loader=None) -> AsyncIterator[RunningServer]:
    """A real grpc.aio server on an ephemeral port and a client channel to it."""
    model = DepthModel(settings) if loader is None else DepthModel(settings, loader=loader)
    service = build(settings, settings.threads, model=model)
    port = await service.start()
    channel = grpc.aio.insecure_channel(
        f"127.0.0.1:{port}", options=message_size_options(settings.max_message_bytes)
    )
    try:
        yield RunningServer(model, depth_pb2_grpc.DepthServiceStub(channel), channel,
                            service.health, port)
    finally:
        await channel.close()
        await service.stop(0)


@pytest.fixture(scope="session")
def serve():
    """``async with serve(settings, loader=...) as running:`` a server for one test."""
    return running_server

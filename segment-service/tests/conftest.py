"""Fakes and fixtures of the segment-service tests.

Test modules cannot import each other under ``--import-mode=importlib``, so the fakes are handed
out by fixtures.
"""

from __future__ import annotations

import io
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import pytest
import torch
from PIL import Image

from scene.segment.v1 import segment_pb2_grpc
from scene_rpc.server import message_size_options
from scene_rpc.service import ModelService, available_cores
from segment_service.models import SamModel, SemanticModel
from segment_service.segmenter import Segmenter
from segment_service.server import build
from segment_service.settings import Settings


class FakePredictor:
    """A stand-in for ``Sam2Predictor`` with masks of known shape.

    Every point prompt yields three candidate masks: discs of radius ``radii`` (in crop pixels)
    around the point, with predicted IoU ``ious``. The "embedding" of a crop is its size, which
    is how the discs stay round whatever the crop's shape.
    """

    def __init__(self, *, input_size: int = 64, radii=(6.0, 12.0, 24.0),
                 ious=(0.9, 0.8, 0.7)) -> None:
        self.input_size = input_size
        self.low_res = input_size // 4
        self.radii = radii
        self.ious = torch.tensor(ious, dtype=torch.float32)
        self.embedded: list[tuple[int, int]] = []
        self.decoded_batches: list[int] = []

    def embed(self, rgb: np.ndarray):
        self.embedded.append(rgb.shape[:2])
        return rgb.shape[:2]

    def decode(self, embeddings, points: torch.Tensor):
        self.decoded_batches.append(points.shape[0])
        height, width = embeddings
        grid = (torch.arange(self.low_res, dtype=torch.float32) + 0.5) / self.low_res
        ys, xs = torch.meshgrid(grid, grid, indexing="ij")
        logits = []
        for x, y in points.tolist():
            distance = torch.sqrt(((xs - x) * width) ** 2 + ((ys - y) * height) ** 2)
            for radius in self.radii:
                # Logits of +-10 (very stable masks) with the edge at the radius.
                logits.append(torch.clamp(radius - distance, -10, 10))
        iou = self.ious.repeat(points.shape[0])
        return torch.stack(logits), iou


@pytest.fixture
def fake_predictor_class() -> type[FakePredictor]:
    return FakePredictor


@pytest.fixture
def make_settings(tiny_models_dir: Path) -> Callable[..., Settings]:
    """Settings for the tiny models, sized for a fast test; keyword arguments override."""

    def make(**overrides) -> Settings:
        values = dict(
            sam_model=str(tiny_models_dir / "sam2"),
            semantic_model=str(tiny_models_dir / "maskformer"),
            host="127.0.0.1",
            port=0,
            device="cpu",
            points_per_side=4,
            crop_points_per_side=2,
            sam_mode_points_per_side=2,
            sam_mode_crop_points_per_side=2,
            points_per_batch=8,
            # Random weights predict IoU ~0.5 and logits ~1e-4: keep every non-empty mask.
            pred_iou_thresh=0.0,
            stability_score_thresh=0.0,
            stability_score_offset=0.0,
            min_region_area=0,
            load_retry_s=0.0,
            grace_s=1.0,
            # Eager float32 by default, whatever the CPU; test_compiled.py covers the compiled
            # runtime and bfloat16.
            runtime="torch",
            dtype="float32",
        )
        values.update(overrides)
        return Settings(**values)

    return make


@dataclass
class Served:
    service: ModelService
    segmenter: Segmenter
    stub: segment_pb2_grpc.SegmentServiceStub
    channel: grpc.aio.Channel
    port: int


@pytest.fixture
async def serve(make_settings) -> AsyncIterator[Callable[..., Served]]:
    """Starts the real server on an ephemeral port; call it with setting overrides."""
    started: list[Served] = []

    async def start(**overrides) -> Served:
        settings = make_settings(**overrides)
        segmenter = Segmenter(settings, SamModel(settings), SemanticModel(settings))
        service = build(settings, settings.threads or available_cores(), segmenter=segmenter)
        port = await service.start()
        channel = grpc.aio.insecure_channel(
            f"127.0.0.1:{port}", options=message_size_options(settings.max_message_bytes)
        )
        served = Served(service, segmenter, segment_pb2_grpc.SegmentServiceStub(channel),
                        channel, port)
        started.append(served)
        return served

    yield start
    for served in started:
        await served.channel.close()
        await served.service.stop(0)


@pytest.fixture(scope="session")
def photo_bytes(shared_images) -> Callable[[str], bytes]:
    def read(stem: str) -> bytes:
        return shared_images[stem].read_bytes()

    return read


@pytest.fixture(scope="session")
def photo_rgb(shared_images) -> Callable[[str], np.ndarray]:
    def read(stem: str) -> np.ndarray:
        with Image.open(shared_images[stem]) as image:
            return np.asarray(image.convert("RGB"))

    return read


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="session")
def to_png() -> Callable[[Image.Image], bytes]:
    return png_bytes

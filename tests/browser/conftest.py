"""The stack the viewer is tested against, and the large cloud for its performance check."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from pointcloud import pack_grid
from tests.browser.browser import BrowserSession, launch_chromium
from tests.stack import Stack, running_stack

PANORAMA_SHAPE = (1024, 2048)  # 2:1 equirectangular: 2,097,152 points


@pytest.fixture(scope="module")
def browser() -> Iterator[BrowserSession]:
    """Headless Chromium for a module's tests (a fresh context per page)."""
    with launch_chromium() as session:
        yield session


@pytest.fixture(scope="module")
def viewer_stack(tmp_path_factory: pytest.TempPathFactory, tiny_models_dir) -> Iterator[Stack]:
    """A smoke stack (tiny models, fake OpenAI server) whose orchestrator serves the viewer."""
    with running_stack(tmp_path_factory.mktemp("viewer-stack"),
                       tiny_models_dir=tiny_models_dir) as stack:
        yield stack


@pytest.fixture(scope="module")
def base_url(viewer_stack: Stack) -> str:
    return f"{viewer_stack.url}/"


@pytest.fixture(scope="module")
def big_panorama() -> bytes:
    """A 2048x1024 panorama as PCLD bytes (the grid variant, which the viewer asks for): smooth
    colours, banded categories, rolling depth."""
    height, width = PANORAMA_SHAPE
    rows = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None]
    cols = np.linspace(0.0, 1.0, width, dtype=np.float32)[None, :]
    depth = 0.5 + 0.3 * np.sin(cols * 12 * np.pi) * np.cos(rows * 4 * np.pi)
    rgb = np.empty((height, width, 3), dtype=np.uint8)
    rgb[..., 0] = (cols * 255).astype(np.uint8)
    rgb[..., 1] = (rows * 255).astype(np.uint8)
    rgb[..., 2] = 128
    categories = np.broadcast_to((rows * 6).clip(0, 5).astype(np.uint8), (height, width))
    return pack_grid(depth, rgb, np.ascontiguousarray(categories), mode="equirect",
                     cloud_id="perf-2m")

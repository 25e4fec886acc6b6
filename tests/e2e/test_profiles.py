"""Every model profile passes the same end-to-end path on tiny models of its architectures: the
real services as processes (``make run --smoke --profile NAME``), an upload at each quality and
a panorama, each a complete labelled cloud."""

from __future__ import annotations

import io
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from pointcloud import decode
from scene_dev import run_plan as run_script
from scene_rpc.profiles import PROFILES
from tests.stack import running_stack

pytestmark = pytest.mark.slow


def png(width: int, height: int) -> bytes:
    rng = np.random.default_rng(width)
    pixels = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module", params=list(PROFILES))
def profile_stack(request, tmp_path_factory, tiny_models_dir):
    with running_stack(tmp_path_factory.mktemp(f"profile-{request.param}"),
                       tiny_models_dir=tiny_models_dir, profile=request.param) as stack:
        with httpx.Client(base_url=stack.url, timeout=120) as client:
            yield request.param, stack, client


def test_each_quality_and_a_panorama_give_a_labelled_cloud(profile_stack):
    profile, stack, client = profile_stack
    for mode, size, quality in (("standard", (160, 120), "draft"),
                                ("standard", (160, 120), "standard"),
                                ("standard", (160, 120), "high"),
                                ("panorama", (256, 128), "standard")):
        response = client.post("/generate", files={"image": ("x.png", png(*size), "image/png")},
                               # Random weights give noisy depth that the edge clean-up would
                               # drop in full: keep every point.
                               data={"mode": mode, "quality": quality, "edges": "keep"})
        assert response.status_code == 200, (profile, quality, response.text, stack.logs())
        cloud = decode(response.content)
        metadata = client.get(f"/generations/{response.headers['X-Generation-Id']}").json()
        assert metadata["status"] == "completed" and metadata["quality"] == quality
        assert cloud.count == metadata["point_count"] > 0
        assert metadata["labels"], "an unlabelled cloud"
        assert set(np.unique(cloud.segments)) <= set(range(6))


def test_health_names_the_tiny_twins_of_the_profiles_models(profile_stack):
    profile, _, client = profile_stack
    health = client.get("/health").json()
    text = str(health)
    expected = PROFILES[profile]
    twins = {Path(run_script.tiny_twin(Path(), model)).name
             for model in (expected.depth_model, expected.sam_model, expected.semantic_model)}
    for name in twins:
        assert f"tiny-models/{name}" in text, (name, health)

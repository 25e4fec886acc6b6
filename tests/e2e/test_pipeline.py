"""The whole system over HTTP: the four real services as processes (tiny models, the fake OpenAI
server), prompt and upload paths, standard and panorama; what is stored is what was returned.

One stack for the module, with two depth replicas behind one comma-separated address.
"""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys

import httpx
import numpy as np
import pytest
from PIL import Image

from pointcloud import decode
from tests.stack import REPO_ROOT, running_stack

pytestmark = pytest.mark.slow
# The fake OpenAI server answers any key of the right shape; the real one would check it.
KEY = "sk-e2e-test-key-0123456789"
SIZE_TAG = "[fake:size={}]"


@pytest.fixture(scope="module")
def stack(tmp_path_factory, tiny_models_dir):
    with running_stack(tmp_path_factory.mktemp("e2e-pipeline"), depth_replicas=2,
                       tiny_models_dir=tiny_models_dir) as stack:
        yield stack


@pytest.fixture(scope="module")
def panorama_photo(shared_images) -> bytes:
    """A 2:1 image from a real photo (the geometry is not what is tested here)."""
    image = Image.open(shared_images["outdoor_colosseum_sky"]).convert("RGB").resize((512, 256))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def png_pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)))


def check_stored(client: httpx.Client, stack, response: httpx.Response, mode: str) -> dict:
    """The returned buffer, the stored assets and the metadata all describe one generation."""
    assert response.status_code == 200, response.text
    generation_id = response.headers["X-Generation-Id"]
    assert "total;dur=" in response.headers["Server-Timing"]
    cloud = decode(response.content)
    assert cloud.count > 0
    metadata = client.get(f"/generations/{generation_id}").json()
    assert metadata["status"] == "completed", metadata
    assert metadata["mode"] == mode

    stored = client.get(f"/generations/{generation_id}/pointcloud.bin")
    assert stored.status_code == 200
    assert stored.content == response.content
    on_disk = stack.data_dir / "generations" / generation_id
    assert (on_disk / "pointcloud.bin").read_bytes() == response.content
    assert json.loads((on_disk / "metadata.json").read_text())["status"] == "completed"

    width, height = metadata["image"]["width"], metadata["image"]["height"]
    image = png_pixels(client.get(f"/generations/{generation_id}/image.png").content)
    depth = png_pixels(client.get(f"/generations/{generation_id}/depth.png").content)
    segments = png_pixels(client.get(f"/generations/{generation_id}/segments.png").content)
    assert image.shape == (height, width, 3)
    assert depth.shape == (height, width) and depth.dtype == np.uint16
    assert segments.shape[:2] == (height, width)
    ply = client.get(f"/generations/{generation_id}/pointcloud.ply")
    assert ply.status_code == 200 and ply.content.startswith(b"ply\n")
    assert f"element vertex {cloud.count}\n".encode() in ply.content[:1000]
    # Engine-ready files and the audio descriptors, from the real services' labels.
    glb = client.get(f"/generations/{generation_id}/scene.glb")
    assert glb.status_code == 200 and glb.content[:4] == b"glTF"
    splat = client.get(f"/generations/{generation_id}/scene.splat")
    assert len(splat.content) == 32 * cloud.count
    descriptors = metadata["descriptors"]
    assert descriptors == cloud.header["descriptors"]
    assert sum(c["count"] for c in descriptors["categories"]) == cloud.count
    if mode == "panorama":
        assert width == 2 * height
    return metadata


def test_upload_standard(client, stack, photo):
    response = client.post("/generate", files={"image": ("chelsea.png", photo, "image/png")},
                           data={"vibe": "warm", "mode": "standard"})
    metadata = check_stored(client, stack, response, "standard")
    # The stored image is the upload's pixels: the photo went through untouched.
    stored = png_pixels(client.get(f"/generations/{metadata['id']}/image.png").content)
    original = np.asarray(Image.open(io.BytesIO(photo)).convert("RGB"))
    np.testing.assert_array_equal(stored, original)
    assert metadata["source"] == "upload" and metadata["vibe"] == "warm"
    for step in ("depth", "segment", "total"):
        assert metadata["timing_ms"][step] > 0


def test_upload_panorama(client, stack, panorama_photo):
    response = client.post("/generate",
                           files={"image": ("pano.png", panorama_photo, "image/png")},
                           data={"mode": "panorama"})
    check_stored(client, stack, response, "panorama")


@pytest.mark.parametrize(("mode", "size"), [("standard", "512x288"), ("panorama", "512x256")])
def test_prompt_through_the_fake_openai_server(client, stack, mode, size):
    prompt = f"a quiet harbour at dusk {SIZE_TAG.format(size)}"
    response = client.post("/generate", json={"prompt": prompt, "vibe": "calm", "mode": mode},
                           headers={"Authorization": f"Bearer {KEY}"})
    metadata = check_stored(client, stack, response, mode)
    assert metadata["source"] == "prompt" and metadata["prompt"] == prompt
    assert metadata["timing_ms"]["imagegen"] > 0
    # The key went to OpenAI (the fake) and nowhere else: not into the record, not into a log.
    record = (stack.data_dir / "generations" / metadata["id"] / "metadata.json").read_text()
    assert KEY not in record
    for name in stack.specs:
        assert KEY not in stack.log(name), name


def test_the_asynchronous_api_ends_in_the_same_stored_generation(client, stack, photo):
    submitted = client.post("/jobs", files={"image": ("chelsea.png", photo, "image/png")})
    assert submitted.status_code == 202, submitted.text
    job = submitted.json()
    events = []
    with client.stream("GET", job["events_url"]) as stream:
        for line in stream.iter_lines():
            if line.startswith("event:"):
                events.append(line.split(":", 1)[1].strip())
    assert events[-1] == "completed", events
    assert {"started", "stage", "progress"} <= set(events)
    result = client.get(job["result_url"])
    assert result.status_code == 200
    assert decode(result.content).count > 0
    assert client.get(job["status_url"]).json()["status"] == "completed"


def test_generations_are_listed_and_health_reports_the_loaded_models(client):
    listed = client.get("/generations").json()
    items = listed["items"] if isinstance(listed, dict) else listed
    assert len(items) >= 4
    health = client.get("/health").json()
    assert health["status"] == "ok"
    models = health["services"]["depth"]["info"]["models"]
    assert models[0]["loaded"] and "tiny-models" in models[0]["model_id"]


def test_two_depth_replicas_both_receive_requests(client, stack, photo):
    """The orchestrator's one depth address lists both replicas; round robin reaches each."""
    assert sorted(stack.depth_names) == ["depth-1", "depth-2"]
    before = {name: len(request_lines(stack.log(name))) for name in stack.depth_names}
    sent = 0
    served = dict.fromkeys(before, 0)
    # Round robin alternates; health checks share the channel, so allow a few more calls than 2.
    while sent < 8 and not all(served.values()):
        response = client.post("/generate", files={"image": ("chelsea.png", photo)})
        assert response.status_code == 200, response.text
        sent += 1
        served = {name: len(request_lines(stack.log(name))) - before[name]
                  for name in stack.depth_names}
    assert sum(served.values()) == sent
    assert all(count >= 1 for count in served.values()), served


def request_lines(log: str) -> list[str]:
    """The depth service's one line per request served."""
    return re.findall(r"depth_service\.servicer: request '[0-9a-f]+'", log)


def test_make_demo_stores_the_bundled_photo_and_reports_it(client, stack):
    """``scripts/demo.py`` against the running stack (it starts none when one answers)."""
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "demo.py"), "--url", stack.url],
        capture_output=True, text=True, timeout=120, cwd=REPO_ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    generation_id = re.search(r"stored as generation ([0-9a-f]{32})", result.stdout).group(1)
    assert "timing breakdown (ms)" in result.stdout and "point cloud: " in result.stdout
    record = client.get(f"/generations/{generation_id}").json()
    assert record["status"] == "completed" and record["source"] == "upload"
    stored = png_pixels(client.get(f"/generations/{generation_id}/image.png").content)
    demo_photo = Image.open(REPO_ROOT / "scripts" / "demo" / "chelsea.png").convert("RGB")
    np.testing.assert_array_equal(stored, np.asarray(demo_photo))

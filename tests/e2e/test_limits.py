"""Every documented request limit, walked over real processes (the orchestrator and the fake
model services): at each limit's largest accepted value a generation completes, at the next one
the request is refused with a 4xx before anything is queued. The README's limits table is the
list walked, and its defaults are checked against the code.

The pixel and byte limits are walked at small values (the orchestrator's own setting, or a
service advertising less), so that a walk costs a small image; the text limits at their
defaults, which are cheap.
"""

from __future__ import annotations

import io
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from orchestrator.settings import Settings
from scene_dev.fakes.grpc_services import DEFAULT_LIMITS
from scene_dev.fakes.processes import FakeStack, fake_stack

pytestmark = pytest.mark.slow

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()
KEY = {"X-OpenAI-Key": "sk-test-limits-0123456789"}
SMALL_PIXELS = 6000
SMALL_UPLOAD_BYTES = 60_000
SMALL_MESSAGE_BYTES = 4 * 1024 * 1024


def limits_table() -> list[tuple[str, str, int]]:
    """(limit, setting, default) of each row of the README's limits table."""
    section = README.split("### Request limits", 1)[1].split("\n\n| limit |", 1)[1]
    rows = []
    for line in section.split("\n\n", 1)[0].splitlines()[2:]:
        cells = [cell.strip() for cell in line.strip("|").split(" | ")]
        rows.append((cells[0], cells[1].strip("`"), int(cells[2].strip("`"))))
    return rows


def test_the_table_lists_the_limits_with_the_codes_defaults():
    rows = limits_table()
    assert {setting for _, setting, _ in rows} == set(WALKS)
    for limit, setting, default in rows:
        assert Settings.model_fields[setting.lower()].default == default, limit
    # The fakes advertise what the table says the services do.
    assert DEFAULT_LIMITS["imagegen"]["max_prompt_chars"] == 4000
    assert DEFAULT_LIMITS["imagegen"]["max_vibe_chars"] == 300


# -- requests -----------------------------------------------------------------------------------


def png(width: int, height: int, pad_to: int | None = None) -> bytes:
    """A flat-coloured PNG (small whatever its size), padded after its end to ``pad_to`` bytes
    (decoders ignore what follows the IEND chunk)."""
    buffer = io.BytesIO()
    Image.fromarray(np.full((height, width, 3), (90, 140, 200), np.uint8)).save(buffer, "PNG")
    data = buffer.getvalue()
    if pad_to is not None:
        assert len(data) <= pad_to
        data += b"\0" * (pad_to - len(data))
    return data


def size_with(pixels: int) -> tuple[int, int]:
    """A width x height of exactly ``pixels``, as square as its factors allow."""
    height = max(h for h in range(1, int(pixels ** 0.5) + 1) if pixels % h == 0)
    return pixels // height, height


def job_count(client: httpx.Client) -> int:
    return len(client.get("/jobs", params={"limit": 500}).json()["items"])


def completes(client: httpx.Client, **request) -> None:
    response = client.post("/jobs", **request)
    assert response.status_code == 202, response.text
    deadline = time.monotonic() + 60
    while (job := client.get(response.json()["status_url"]).json())["status"] not in (
            "completed", "failed", "cancelled"):
        assert time.monotonic() < deadline, job
        time.sleep(0.05)
    assert job["status"] == "completed", (job["error"], job)


def refused(client: httpx.Client, status: int, words: str, **request) -> None:
    before = job_count(client)
    response = client.post("/jobs", **request)
    assert response.status_code == status, response.text
    assert words in str(response.json()["detail"])
    assert job_count(client) == before  # nothing queued


# -- the walks, one per row of the table ---------------------------------------------------------


def walk_prompt(client: httpx.Client, limit: int) -> None:
    completes(client, json={"prompt": "p" * limit}, headers=KEY)
    refused(client, 422, "prompt", json={"prompt": "p" * (limit + 1)}, headers=KEY)


def walk_vibe(client: httpx.Client, limit: int) -> None:
    completes(client, json={"prompt": "a bay", "vibe": "v" * limit}, headers=KEY)
    refused(client, 422, "vibe", json={"prompt": "a bay", "vibe": "v" * (limit + 1)},
            headers=KEY)


def walk_pixels(client: httpx.Client, limit: int) -> None:
    completes(client, files={"image": ("a.png", png(*size_with(limit)), "image/png")})
    refused(client, 413, f"over the limit of {limit}",
            files={"image": ("a.png", png(*size_with(limit + 1)), "image/png")})


def walk_upload_bytes(client: httpx.Client, limit: int) -> None:
    completes(client, files={"image": ("a.png", png(64, 48, pad_to=limit), "image/png")})
    refused(client, 413, f"upload limit of {limit}",
            files={"image": ("a.png", png(64, 48, pad_to=limit + 1), "image/png")})


@dataclass
class Walk:
    # The orchestrator's environment that makes the row's limit the binding one, small.
    env: dict[str, str]
    # The field of GET /limits the walk is at, and the walk.
    field: str
    run: Callable[[httpx.Client, int], None]
    expected: int


WALKS = {
    "MAX_PROMPT_CHARS": Walk({}, "max_prompt_chars", walk_prompt, 4000),
    "MAX_VIBE_CHARS": Walk({}, "max_vibe_chars", walk_vibe, 300),
    "MAX_IMAGE_PIXELS": Walk({"MAX_IMAGE_PIXELS": str(SMALL_PIXELS)}, "max_image_pixels",
                             walk_pixels, SMALL_PIXELS),
    # 4 MiB messages: the depth answer (8 bytes a pixel) bounds the photo, below its setting.
    "MAX_MESSAGE_BYTES": Walk({"MAX_MESSAGE_BYTES": str(SMALL_MESSAGE_BYTES)},
                              "max_image_pixels", walk_pixels, 3 * 1024 * 1024 // 8),
    "MAX_UPLOAD_BYTES": Walk({"MAX_UPLOAD_BYTES": str(SMALL_UPLOAD_BYTES)}, "max_upload_bytes",
                             walk_upload_bytes, SMALL_UPLOAD_BYTES),
}


@pytest.fixture(scope="module")
def stacks(tmp_path_factory):
    """One fake stack per distinct orchestrator environment of the walks, started lazily."""
    opened: dict[tuple, tuple[FakeStack, object]] = {}

    def get(env: dict[str, str]) -> FakeStack:
        key = tuple(sorted(env.items()))
        if key not in opened:
            manager = fake_stack(tmp_path_factory.mktemp("limits"), env=env)
            opened[key] = (manager.__enter__(), manager)
        return opened[key][0]

    yield get
    for _, manager in opened.values():
        manager.__exit__(None, None, None)


@pytest.mark.parametrize("row", limits_table(), ids=lambda row: row[1])
def test_every_documented_limit_is_walked(stacks, row):
    _, setting, _ = row
    walk = WALKS[setting]
    stack = stacks(walk.env)
    with httpx.Client(base_url=stack.url, timeout=60) as client:
        in_force = client.get("/limits").json()[walk.field]
        assert in_force == walk.expected
        walk.run(client, in_force)


def test_the_front_door_follows_services_that_restart_with_smaller_limits(tmp_path):
    # Generated images of 64x48: within the 5000 pixels segment will take.
    with fake_stack(tmp_path, env={"LIMITS_REFRESH_S": "0.5"}, image_size="64x48") as stack, \
            httpx.Client(base_url=stack.url, timeout=60) as client:
        assert client.get("/limits").json()["max_vibe_chars"] == 300
        stack.restart_fakes(limits=["imagegen.max_prompt_chars=1000",
                                    "imagegen.max_vibe_chars=40",
                                    "segment.max_image_pixels=5000"])
        # Each service is asked on its own: the three changes may arrive in different refreshes.
        deadline = time.monotonic() + 20
        while ((limits := client.get("/limits").json())["max_vibe_chars"],
               limits["max_prompt_chars"], limits["max_image_pixels"]) != (40, 1000, 5000):
            assert time.monotonic() < deadline, limits
            time.sleep(0.2)
        assert limits["orchestrator"]["max_vibe_chars"] == 300  # its own setting is unchanged
        walk_prompt(client, 1000)
        walk_vibe(client, 40)
        walk_pixels(client, 5000)
        text = re.sub(r"\s+", " ", stack.log("orchestrator"))
        assert "request limits:" in text

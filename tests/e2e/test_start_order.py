"""Start in any order: the first request after the model services come up succeeds, whether
they started after the orchestrator or came back from a crash, and a service that never starts
is answered 503 naming it within SERVICE_CONNECT_GRACE_S.

Over real processes: the tiny-model stack as ``make run`` plans it, and, for the twenty rounds,
the fake model services (the orchestrator's connection handling is what is under test there,
and the fakes start in a second)."""

from __future__ import annotations

import io
import random
import signal
import time

import httpx
import numpy as np
import pytest
from PIL import Image

from scene_dev.fakes.processes import FakeStack, fake_stack
from tests.stack import Stack, free_ports, stack_specs

pytestmark = pytest.mark.slow

# The orchestrator's default; what the 503 of a service that never starts must come within.
CONNECT_GRACE_S = 5.0


def small_photo() -> bytes:
    rgb = np.random.default_rng(7).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG")
    return buffer.getvalue()


def upload(url: str, photo: bytes) -> httpx.Response:
    return httpx.post(f"{url}/generate", files={"image": ("photo.png", photo, "image/png")},
                      timeout=120)


def test_services_started_after_the_orchestrator_and_restarted_after_a_crash(
        tmp_path, tiny_models_dir):
    specs, data_dir = stack_specs(tmp_path, tiny_models_dir=tiny_models_dir)
    stack = Stack(specs, tmp_path / "logs", data_dir)
    photo = small_photo()
    try:
        # The orchestrator first, alone: its channels try the services and back off.
        stack.start("orchestrator")
        assert httpx.get(f"{stack.url}/health", timeout=10).json()["status"] == "degraded"
        time.sleep(2.0)
        backends = [name for name in stack.specs if name != "orchestrator"]
        for name in backends:
            stack._spawn(name)
        for name in backends:
            stack.wait_healthy(name)
        # The instant every service reports SERVING.
        response = upload(stack.url, photo)
        assert response.status_code == 200, (response.text, stack.logs())

        for _ in range(4):
            stack.kill("depth", signal.SIGKILL)
            stack.start("depth")
            response = upload(stack.url, photo)
            assert response.status_code == 200, (response.text, stack.logs())
    finally:
        stack.stop()


def test_twenty_of_twenty_first_requests_succeed_whatever_the_start_order(tmp_path):
    """Each round: the fakes are down and the orchestrator's health probes meet refused
    connections (its channels back off), the fakes start 1-3 s later, and an upload is sent
    the moment they serve."""
    photo = small_photo()
    randomness = random.Random(23)
    stack = FakeStack(tmp_path, {}, [], "96x64")
    stack.ports = dict(zip(("orchestrator", "depth", "segment", "imagegen"), free_ports(4),
                           strict=True))
    answers = []
    try:
        stack.start_orchestrator()
        for _ in range(20):
            down_until = time.monotonic() + randomness.uniform(1.0, 3.0)
            while time.monotonic() < down_until:
                httpx.get(f"{stack.url}/health", timeout=10)
            stack.start_fakes()
            answers.append(upload(stack.url, photo).status_code)
            stack.processes["fakes"].send_signal(signal.SIGKILL)
            stack.processes.pop("fakes").wait(10)
    finally:
        stack.close()
    assert answers == [200] * 20


def test_a_service_that_never_starts_is_a_503_naming_it_within_the_grace(tmp_path):
    with fake_stack(tmp_path) as stack:
        stack.stop("fakes")
        started = time.monotonic()
        response = upload(stack.url, small_photo())
        elapsed = time.monotonic() - started
    assert response.status_code == 503
    assert "service at 127.0.0.1:" in response.json()["detail"]
    assert elapsed < CONNECT_GRACE_S + 1.0, elapsed

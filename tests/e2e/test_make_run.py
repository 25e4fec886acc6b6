"""``scripts/run.py`` (what ``make run`` runs) as a user runs it: a process that starts the four
services, prints where they are, and on Ctrl-C leaves nothing behind."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest

from tests.stack import REPO_ROOT, free_ports


def small_png() -> bytes:
    import io

    import numpy as np
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.full((48, 64, 3), 120, np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()

pytestmark = pytest.mark.slow
RUN = REPO_ROOT / "scripts" / "run.py"
READY = re.compile(r"scene server ready: (http://\S+)")


def processes_with(marker: str) -> list[int]:
    """Processes whose environment carries ``marker`` (every child inherits it)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if marker.encode() in (entry / "environ").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue  # gone, or not ours to read
    return found


def wait_gone(marker: str, timeout_s: float = 10.0) -> list[int]:
    deadline = time.monotonic() + timeout_s
    while (left := processes_with(marker)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


def start_run(tmp_path: Path, *args: str, env: dict[str, str] | None = None):
    marker = f"SCENE_RUN_TEST={uuid.uuid4().hex}"
    key, value = marker.split("=")
    with open(tmp_path / "run.log", "wb") as log:
        process = subprocess.Popen(
            [sys.executable, str(RUN), "--smoke", "--data-dir", str(tmp_path / "data"),
             "--grace", "5", *args],
            cwd=REPO_ROOT, env={**os.environ, **(env or {}), key: value},
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    return process, marker, tmp_path / "run.log"


def wait_for(pattern: re.Pattern, log: Path, process: subprocess.Popen, timeout_s: float = 120
             ) -> re.Match | None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        match = pattern.search(log.read_text(errors="replace"))
        if match or process.poll() is not None:
            return match
        time.sleep(0.2)
    return None


def test_starts_every_service_prefixes_their_logs_and_stops_them_all_on_ctrl_c(
        tmp_path, tiny_models_dir):
    ports = free_ports(5)
    process, marker, log = start_run(
        tmp_path, "--orchestrator-port", str(ports[0]), "--depth-port", str(ports[1]),
        "--segment-port", str(ports[2]), "--imagegen-port", str(ports[3]),
        "--openai-port", str(ports[4]))
    try:
        ready = wait_for(READY, log, process)
        assert ready, log.read_text()
        url = ready.group(1)
        assert url == f"http://127.0.0.1:{ports[0]}"
        # The first upload after the ready line succeeds (nothing still connecting).
        first = httpx.post(f"{url}/generate", timeout=120,
                           files={"image": ("photo.png", small_png(), "image/png")})
        assert first.status_code == 200, first.text
        text = log.read_text()
        assert f"API docs  {url}/docs" in text and f"viewer    {url}/" in text
        health = httpx.get(f"{url}/health", timeout=10).json()
        assert health["status"] == "ok", health
        # Every service's own output, each line under its name.
        for name in ("depth", "segment", "imagegen", "orchestrator", "openai-fake"):
            assert re.search(rf"^{re.escape(name)}\s+\| ", text, re.M), name
        children = processes_with(marker)
        assert len(children) >= 6  # run.py and its five services

        process.send_signal(signal.SIGINT)  # what Ctrl-C delivers
        assert process.wait(30) == 0
        assert "all services stopped" in log.read_text()
        assert wait_gone(marker) == []
    finally:
        process.kill()
        for pid in processes_with(marker):
            os.kill(pid, signal.SIGKILL)


def test_a_service_that_dies_at_start_stops_the_others_and_is_reported(tmp_path,
                                                                       tiny_models_dir):
    ports = free_ports(5)
    # An invalid setting: the depth service refuses to start.
    process, marker, log = start_run(
        tmp_path, "--orchestrator-port", str(ports[0]), "--depth-port", str(ports[1]),
        "--segment-port", str(ports[2]), "--imagegen-port", str(ports[3]),
        "--openai-port", str(ports[4]), env={"DEPTH_TILE_OVERLAP": "5"})
    try:
        assert process.wait(120) == 1
        text = log.read_text()
        assert "depth exited with status" in text
        assert "tile_overlap" in text.split("depth exited with status")[1]
        assert "scene server ready" not in text
        assert wait_gone(marker) == []
    finally:
        process.kill()
        for pid in processes_with(marker):
            os.kill(pid, signal.SIGKILL)


def test_sigterm_stops_the_stack_too_and_replicas_share_the_depth_address(tmp_path,
                                                                          tiny_models_dir):
    # A base with 15 free ports above it is likely, not certain (hence the skip below).
    base = free_ports(1)[0]
    process, marker, log = start_run(tmp_path, "--port-base", str(base), "--depth-replicas", "2")
    try:
        ready = wait_for(READY, log, process)
        text = log.read_text().lower()
        if ready is None and ("could not bind" in text or "address already in use" in text):
            pytest.skip(f"a port above {base} was taken")
        assert ready, log.read_text()
        text = log.read_text()
        assert re.search(rf"depth-1\s+127\.0\.0\.1:{base + 1}", text)
        assert re.search(rf"depth-2\s+127\.0\.0\.1:{base + 10}", text)
        health = httpx.get(f"{ready.group(1)}/health", timeout=10).json()
        assert health["status"] == "ok", health
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
        assert wait_gone(marker) == []
    finally:
        process.kill()
        for pid in processes_with(marker):
            os.kill(pid, signal.SIGKILL)

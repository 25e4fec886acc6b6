"""Clean stops, over real processes: SIGTERM to any service while idle, mid-request and
mid-graph-export exits 0 within its grace, with no abort and no core.

Each case runs :data:`REPEATS` times per service, each time in a fresh process (``python -m
<service>``, configured by its environment only, tiny models), several at once. The moments are
found, not waited for:

- idle: the service reports SERVING (its preload done);
- mid-request: the first progress event of a streaming call has arrived (depth, segment), or the
  fake OpenAI server has received the upstream call (imagegen);
- mid-export: a compiled-graph export is writing its staging folder in the runtime cache
  (``.staging-*``, renamed when the export ends): for depth, the background export that a call
  of a new input shape starts; for segment, the export its preload runs.

A stop during an export used to abort (SIGABRT, "terminate called without an active
exception": the export's daemon thread unwound inside C++ while the interpreter finalized);
``scene_rpc.service.exit_after_stop`` ends the process without finalizing once it has stopped.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest
from grpc_health.v1 import health_pb2
from PIL import Image

from scene.common.v1 import common_pb2
from scene.depth.v1 import depth_pb2, depth_pb2_grpc
from scene.imagegen.v1 import imagegen_pb2, imagegen_pb2_grpc
from scene.segment.v1 import segment_pb2, segment_pb2_grpc
from scene_dev.fakes.openai_server import FakeOpenAI, serve_in_thread
from tests.stack import REPO_ROOT, free_ports, grpc_health, wait_until

REPEATS = 10
# Processes stopped at once: enough to keep the two cores busy while others import.
PARALLEL = 4
GRACE_S = 3
# How long a process may take to start (import torch, load a tiny model) on a loaded machine.
START_TIMEOUT_S = 180
# Polled this often: a tiny model's graph export lasts a fraction of a second, and the stop must
# land inside one.
POLL_S = 0.02
# Beyond the grace: the interpreter's own exit (a bound against a hang, not a timing).
EXIT_MARGIN_S = 20
ABORT_SIGNS = ("Fatal Python error", "terminate called", "core dumped", "Aborted")
SERVING = health_pb2.HealthCheckResponse.SERVING


def png(width: int, height: int, seed: int = 0) -> bytes:
    rgb = np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(rgb).save(out, "PNG")
    return out.getvalue()


@dataclass
class Started:
    popen: subprocess.Popen
    log_path: Path
    address: str
    work: Path

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def terminate_and_wait(self) -> int | None:
        """SIGTERM, then the exit status, or None when it outlives grace + margin (killed)."""
        self.popen.send_signal(signal.SIGTERM)
        try:
            return self.popen.wait(GRACE_S + EXIT_MARGIN_S)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()
            return None


def launch(module: str, env: dict[str, str], work: Path, port: int) -> Started:
    work.mkdir(parents=True, exist_ok=True)
    log_path = work / f"{module}.log"
    with open(log_path, "wb") as log:
        popen = subprocess.Popen(
            [sys.executable, "-m", module], cwd=REPO_ROOT, stdin=subprocess.DEVNULL,
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1", **env})
    return Started(popen, log_path, f"127.0.0.1:{port}", work)


def grpc_ready(started: Started) -> None:
    def ready():
        assert started.popen.poll() is None, f"exited early:\n{started.log[-3000:]}"
        return grpc_health(started.address) == SERVING

    wait_until(ready, START_TIMEOUT_S, f"{started.address} SERVING", POLL_S)


def staging_folder(cache: Path) -> bool:
    return any(cache.rglob(".staging-*"))


def exporting(started: Started) -> Started:
    """``started`` once its preload is writing a graph (a staging folder in its cache)."""
    wait_until(lambda: started.popen.poll() is None
               and staging_folder(started.work / "compiled"),
               START_TIMEOUT_S, "a graph export under way", POLL_S)
    return started


def streaming(events) -> None:
    """A streaming call under way: its first progress event read, the rest in the background."""
    assert next(events).HasField("progress")
    _drain(events)


# ---- the services ----------------------------------------------------------------------------

def depth(work: Path, tiny: Path, case: str) -> Started:
    [port] = free_ports(1)
    env = {"DEPTH_HOST": "127.0.0.1", "DEPTH_PORT": str(port),
           "DEPTH_MODEL": str(tiny / "depth-anything"), "DEPTH_FALLBACK_MODEL": "",
           "DEPTH_PRELOAD": "true", "DEPTH_THREADS": "1", "DEPTH_GRACE_S": str(GRACE_S),
           "DEPTH_RUNTIME_CACHE_DIR": str(work / "compiled"),
           # Eager unless the case is about exports: no export to wait for at load.
           "DEPTH_RUNTIME": "auto" if case == "mid-export" else "torch",
           # Many tiles: the call is still running after its first progress event.
           "DEPTH_TILE_MODE": "forced" if case == "mid-request" else "auto"}
    started = launch("depth_service", env, work, port)
    if case == "mid-export":
        # The preload exports the native square and the shape buckets before the service reads
        # SERVING: stop while one is being written.
        return exporting(started)
    grpc_ready(started)
    if case == "mid-request":
        stub = depth_pb2_grpc.DepthServiceStub(grpc.insecure_channel(started.address))
        request = depth_pb2.EstimateDepthRequest(image=common_pb2.Image(encoded=png(640, 480)))
        streaming(stub.StreamEstimateDepth(request, timeout=120))
    return started


def segment(work: Path, tiny: Path, case: str) -> Started:
    [port] = free_ports(1)
    env = {"SEG_HOST": "127.0.0.1", "SEG_PORT": str(port), "SAM_MODEL": str(tiny / "sam2"),
           "SEG_MODEL": str(tiny / "segformer"), "SEG_PRELOAD": "true", "SEG_THREADS": "1",
           "SEG_GRACE_S": str(GRACE_S), "SEG_RUNTIME_CACHE_DIR": str(work / "compiled"),
           "SEG_RUNTIME": "auto" if case == "mid-export" else "torch",
           # Many prompt batches: the call is still running after its first progress event.
           "SEG_POINTS_PER_SIDE": "16", "SEG_POINTS_PER_BATCH": "4"}
    started = launch("segment_service", env, work, port)
    if case == "mid-export":
        # The preload exports the models' graphs: stop while one is being written.
        return exporting(started)
    grpc_ready(started)
    if case == "mid-request":
        stub = segment_pb2_grpc.SegmentServiceStub(grpc.insecure_channel(started.address))
        request = segment_pb2.SegmentRequest(image=common_pb2.Image(encoded=png(320, 240)))
        streaming(stub.StreamSegment(request, timeout=120))
    return started


def imagegen(work: Path, fake: FakeOpenAI, case: str) -> Started:
    [port] = free_ports(1)
    env = {"IMAGEGEN_HOST": "127.0.0.1", "IMAGEGEN_PORT": str(port),
           "OPENAI_BASE_URL": fake.base_url, "IMAGEGEN_GRACE_S": str(GRACE_S)}
    started = launch("imagegen_service", env, work, port)
    grpc_ready(started)
    if case == "mid-request":
        # The fake answers after a minute: the call is in flight once the fake has it.
        prompt = f"[fake:slow=60] a quiet room {work.name}"
        stub = imagegen_pb2_grpc.ImageGenServiceStub(grpc.insecure_channel(started.address))
        request = imagegen_pb2.GenerateImageRequest(
            prompt=prompt, openai_api_key="sk-clean-stops-0123456789")
        _drain_call(lambda: stub.GenerateImage(request, timeout=120))
        wait_until(lambda: any(prompt in str(r.get("body")) for r in fake.requests()), 60,
                   "the upstream call in flight", POLL_S)
    return started


def orchestrator(work: Path, case: str) -> Started:
    port, *nobody = free_ports(4)
    env = {"ORCHESTRATOR_HOST": "127.0.0.1", "ORCHESTRATOR_PORT": str(port),
           "DATA_DIR": str(work / "data"), "SHUTDOWN_GRACE_S": str(GRACE_S),
           # No backend listens: the orchestrator serves (degraded) all the same.
           "DEPTH_SERVICE_ADDR": f"127.0.0.1:{nobody[0]}",
           "SEGMENT_SERVICE_ADDR": f"127.0.0.1:{nobody[1]}",
           "IMAGEGEN_SERVICE_ADDR": f"127.0.0.1:{nobody[2]}"}
    started = launch("orchestrator", env, work, port)

    def answers() -> bool:
        assert started.popen.poll() is None, f"exited early:\n{started.log[-3000:]}"
        try:
            return httpx.get(f"http://{started.address}/health", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(answers, START_TIMEOUT_S, "/health answers", POLL_S)
    return started


def _drain(events) -> None:
    """Read the rest of a stream in the background (it ends with the result or the stop)."""
    def read() -> None:
        try:
            for _ in events:
                pass
        except grpc.RpcError:
            pass

    threading.Thread(target=read, daemon=True).start()


def _drain_call(call: Callable[[], object]) -> None:
    def run() -> None:
        try:
            call()
        except grpc.RpcError:
            pass

    threading.Thread(target=run, daemon=True).start()


# ---- the test --------------------------------------------------------------------------------

# The orchestrator does no graph export, and no call of its runs long without backends.
CASES = [("depth", "idle"), ("depth", "mid-request"), ("depth", "mid-export"),
         ("segment", "idle"), ("segment", "mid-request"), ("segment", "mid-export"),
         ("imagegen", "idle"), ("imagegen", "mid-request"),
         ("orchestrator", "idle")]

@pytest.fixture(scope="module")
def fake_openai():
    with serve_in_thread() as fake:
        yield fake


def problem(started: Started, status: int | None) -> str | None:
    """Why this stop was not clean, or None."""
    log = started.log
    if status is None:
        return f"still running {GRACE_S + EXIT_MARGIN_S}s after SIGTERM"
    if status != 0:
        name = signal.Signals(-status).name if status < 0 else str(status)
        return f"exit {name}:\n{log[-2000:]}"
    signs = [sign for sign in ABORT_SIGNS if sign in log]
    if signs:
        return f"exit 0 but the log shows {signs}:\n{log[-2000:]}"
    if list(started.work.rglob("core*")):
        return "a core file was left"
    return None


@pytest.mark.parametrize("service,case", CASES,
                         ids=lambda v: v if isinstance(v, str) else None)
def test_sigterm_exits_zero_within_the_grace(service, case, tiny_models_dir, fake_openai,
                                             tmp_path):
    def once(i: int) -> str | None:
        work = tmp_path / f"{i}"
        if service == "depth":
            started = depth(work, tiny_models_dir, case)
        elif service == "segment":
            started = segment(work, tiny_models_dir, case)
        elif service == "imagegen":
            started = imagegen(work, fake_openai, case)
        else:
            started = orchestrator(work, case)
        try:
            return problem(started, started.terminate_and_wait())
        finally:
            if started.popen.poll() is None:
                started.popen.kill()

    with ThreadPoolExecutor(PARALLEL) as pool:
        outcomes = list(pool.map(once, range(REPEATS)))
    failures = [f"run {i}: {why}" for i, why in enumerate(outcomes) if why]
    assert not failures, "\n".join(failures)

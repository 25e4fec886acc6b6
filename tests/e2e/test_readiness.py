"""Readiness that tells the truth, over real processes (``python -m <service>`` configured by the
environment only, probed with ``python -m scene_rpc.health_probe`` as the containers do).

- preloading: not ready until the model is loaded; after a failed load not ready until the
  background retry succeeds, with no request needed; alive throughout;
- loading lazily: ready before the first request, with nothing loaded.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import grpc
import pytest

from scene.common.v1 import common_pb2
from scene.depth.v1 import depth_pb2_grpc
from scene.segment.v1 import segment_pb2_grpc
from tests.stack import REPO_ROOT, free_ports, wait_until

DEPTH = "scene.depth.v1.DepthService"
SEGMENT = "scene.segment.v1.SegmentService"
START_TIMEOUT_S = 120
# Each probe is a process of its own (the health_probe command): polled at this pace.
PROBE_EVERY_S = 0.2


def probe(address: str, *args: str) -> tuple[int, str]:
    """The containers' health check as a process: (exit status, its output)."""
    done = subprocess.run(
        [sys.executable, "-m", "scene_rpc.health_probe", "--timeout", "3", address, *args],
        capture_output=True, text=True, timeout=60, cwd=REPO_ROOT)
    return done.returncode, (done.stdout + done.stderr).strip()


class Service:
    def __init__(self, module: str, env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        with open(log_path, "wb") as log:
            self.popen = subprocess.Popen(
                [sys.executable, "-m", module], env={**os.environ, **env}, cwd=REPO_ROOT,
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)

    def stop(self) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                return self.popen.wait(30)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        return self.popen.returncode

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture
def start(tmp_path):
    started: list[Service] = []

    def run(module: str, **env: str) -> Service:
        service = Service(module, env, tmp_path / f"{module}-{len(started)}.log")
        started.append(service)
        return service

    yield run
    for service in started:
        service.stop()


def depth_info(address: str) -> common_pb2.GetInfoResponse:
    with grpc.insecure_channel(address) as channel:
        return depth_pb2_grpc.DepthServiceStub(channel).GetInfo(
            common_pb2.GetInfoRequest(), timeout=5)


def test_a_preloading_service_is_ready_only_once_its_model_loads(start, tiny_models_dir,
                                                                 tmp_path):
    model_dir = tmp_path / "depth-model"  # the weights are not there yet
    [port] = free_ports(1)
    address = f"127.0.0.1:{port}"
    service = start("depth_service", DEPTH_HOST="127.0.0.1", DEPTH_PORT=str(port),
                    DEPTH_MODEL=str(model_dir), DEPTH_FALLBACK_MODEL="", DEPTH_PRELOAD="true",
                    DEPTH_LOAD_RETRY_S="1", DEPTH_THREADS="1", DEPTH_RUNTIME="torch",
                    HF_HUB_OFFLINE="1")
    wait_until(lambda: probe(address, "--liveness")[0] == 0, START_TIMEOUT_S, "alive",
               PROBE_EVERY_S)
    # The preload failed (nothing to load): alive, not ready, the reason in Info.
    wait_until(lambda: depth_info(address).models[0].last_error, 60, "the failed load reported",
               PROBE_EVERY_S)
    assert probe(address) == (1, f"{address}: NOT_SERVING")
    assert probe(address, "--service", DEPTH) == (1, f"{address} {DEPTH}: NOT_SERVING")
    assert probe(address, "--liveness")[0] == 0
    assert not depth_info(address).models[0].loaded

    # The weights arrive; the background retry loads them with no request at all.
    shutil.copytree(tiny_models_dir / "depth-anything", model_dir)
    wait_until(lambda: probe(address)[0] == 0, 60, "ready after the retry", PROBE_EVERY_S)
    assert probe(address, "--service", DEPTH)[0] == 0
    [model] = depth_info(address).models
    assert model.loaded and model.last_error == ""
    assert service.stop() == 0
    assert "not ready: depth model failed to load" in service.log


def test_a_preload_is_never_reported_ready_before_the_model_is_loaded(start, tiny_models_dir):
    [port] = free_ports(1)
    address = f"127.0.0.1:{port}"
    start("depth_service", DEPTH_HOST="127.0.0.1", DEPTH_PORT=str(port),
          DEPTH_MODEL=str(tiny_models_dir / "depth-pro"), DEPTH_FALLBACK_MODEL="",
          DEPTH_PRELOAD="true", DEPTH_THREADS="1", DEPTH_RUNTIME="torch", HF_HUB_OFFLINE="1")
    wait_until(lambda: probe(address, "--liveness")[0] == 0, START_TIMEOUT_S, "alive",
               PROBE_EVERY_S)
    # Whenever readiness says SERVING, the model is loaded (asked right after, never before).
    while probe(address)[0] != 0:
        assert depth_info(address).models[0].last_error == ""
    assert depth_info(address).models[0].loaded


def test_a_lazy_service_is_ready_before_its_first_request(start, tiny_models_dir):
    [port] = free_ports(1)
    address = f"127.0.0.1:{port}"
    start("segment_service", SEG_HOST="127.0.0.1", SEG_PORT=str(port),
          SAM_MODEL=str(tiny_models_dir / "sam2"), SEG_MODEL=str(tiny_models_dir / "maskformer"),
          SEG_PRELOAD="false", SEG_THREADS="1", SEG_RUNTIME="torch", HF_HUB_OFFLINE="1")
    wait_until(lambda: probe(address)[0] == 0, START_TIMEOUT_S, "ready", PROBE_EVERY_S)
    assert probe(address, "--service", SEGMENT)[0] == 0
    assert probe(address, "--liveness")[0] == 0
    with grpc.insecure_channel(address) as channel:
        info = segment_pb2_grpc.SegmentServiceStub(channel).GetInfo(
            common_pb2.GetInfoRequest(), timeout=5)
    assert info.service == SEGMENT and not any(m.loaded for m in info.models)

"""``python -m segment_service`` as a process: serves health, stops cleanly on SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serves_and_stops_on_sigterm(tiny_models_dir):
    port = _free_port()
    env = {
        **os.environ,
        "SEG_HOST": "127.0.0.1",
        "SEG_PORT": str(port),
        "SAM_MODEL": str(tiny_models_dir / "sam2"),
        "SEG_MODEL": str(tiny_models_dir / "maskformer"),
        "SEG_DEVICE": "cpu",
        "SEG_THREADS": "1",
        "SEG_GRACE_S": "1",
    }
    process = subprocess.Popen([sys.executable, "-m", "segment_service"], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            response = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service="scene.segment.v1.SegmentService"),
                timeout=60, wait_for_ready=True)
        assert response.status == health_pb2.HealthCheckResponse.SERVING
        process.send_signal(signal.SIGTERM)
        started = time.monotonic()
        assert process.wait(timeout=30) == 0
        assert time.monotonic() - started < 30
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    output = process.stdout.read()
    assert "listening on port" in output and "signal received" in output

"""``python -m imagegen_service`` as a real process: configured by the environment, healthy,
serving, logging at DEBUG without the key, and finishing in-flight calls on SIGTERM."""

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from scene.common.v1 import common_pb2
from scene.imagegen.v1 import imagegen_pb2, imagegen_pb2_grpc


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def wait_serving(channel: grpc.aio.Channel, process: subprocess.Popen) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert process.poll() is None, "the service exited during start-up"
        try:
            answer = await health.Check(health_pb2.HealthCheckRequest(), timeout=1)
            if answer.status == health_pb2.HealthCheckResponse.SERVING:
                return
        except grpc.aio.AioRpcError:
            pass
        await asyncio.sleep(0.1)
    raise AssertionError("the service did not become SERVING")


@pytest.fixture
def service(fake_openai_process, tmp_path):
    """The service as a process, its port and the file its stderr goes to."""
    fake_openai_process.reset()
    port = free_port()
    env = {
        **os.environ,
        "IMAGEGEN_HOST": "127.0.0.1",
        "IMAGEGEN_PORT": str(port),
        "IMAGEGEN_MODEL": "gpt-image-1",
        "IMAGEGEN_LOG_LEVEL": "DEBUG",
        "IMAGEGEN_BACKOFF_INITIAL_S": "0.01",
        "IMAGEGEN_GRACE_S": "10",
        "OPENAI_BASE_URL": fake_openai_process.base_url,
        # The operator's own settings must not reach the caller's request.
        "OPENAI_API_KEY": "sk-operator-key-must-not-be-used",
        "OPENAI_ORG_ID": "org-operator",
    }
    stderr_path = tmp_path / "stderr.txt"
    with open(stderr_path, "w") as stderr:
        process = subprocess.Popen([sys.executable, "-m", "imagegen_service"], env=env,
                                   stderr=stderr, stdout=subprocess.DEVNULL)
    yield process, port, stderr_path
    if process.poll() is None:
        process.kill()
        process.wait()


async def test_the_service_process(service, fake_openai_process, api_key):
    process, port, stderr_path = service
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        await wait_serving(channel, process)
        stub = imagegen_pb2_grpc.ImageGenServiceStub(channel)
        info = await stub.GetInfo(common_pb2.GetInfoRequest())
        assert info.models[0].model_id == "gpt-image-1" and info.models[0].loaded

        with_key = {"openai_api_key": api_key}
        ok = await stub.GenerateImage(imagegen_pb2.GenerateImageRequest(
            prompt="a windmill", **with_key))
        assert (ok.width_px, ok.height_px) == (1536, 1024)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.GenerateImage(imagegen_pb2.GenerateImageRequest(
                prompt="a windmill [fake:401]", **with_key))
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        sent = fake_openai_process.requests()
        assert {r["headers"]["authorization"] for r in sent} == {f"Bearer {api_key}"}
        assert not any("openai-organization" in r["headers"] for r in sent)

        # SIGTERM during a call: the call still completes, then the process exits cleanly.
        slow = asyncio.ensure_future(stub.GenerateImage(imagegen_pb2.GenerateImageRequest(
            prompt="a windmill [fake:slow=1]", **with_key)))
        for _ in range(100):
            if len(fake_openai_process.requests()) == 3:
                break
            await asyncio.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        finished = await slow
        assert finished.width_px == 1536
    assert process.wait(timeout=15) == 0

    logs = stderr_path.read_text()
    assert "imagegen listening on port" in logs
    assert "stopping with a 10s grace period" in logs
    assert any(" DEBUG " in line for line in logs.splitlines())
    for piece in (api_key, api_key[8:20], api_key[-4:]):
        assert piece not in logs

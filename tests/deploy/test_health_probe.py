"""``python -m scene_rpc.health_probe``: the containers' health check, run as a process against
a real server built by the shared bootstrap: readiness by default, liveness with --liveness."""

from __future__ import annotations

import asyncio
import socket
import sys
import threading
import time

import pytest
from grpc_health.v1 import health_pb2

from scene_rpc import server as rpc_server
from scene_rpc.lifecycle import LoadResult, ManagedModel
from scene_rpc.service import ModelService, ServiceInfo

SERVICE = "scene.test.v1.Probe"


async def probe(*args: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "scene_rpc.health_probe", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    output, _ = await process.communicate()
    return process.returncode, output.decode()


@pytest.fixture
async def served():
    server, health = rpc_server.build_server(service_names=[SERVICE], register=lambda s: None)
    port = await rpc_server.start(server, health, "127.0.0.1:0")
    yield f"127.0.0.1:{port}", health
    await server.stop(0)


async def test_serving_exits_zero(served):
    address, _ = served
    assert await probe(address) == (0, f"{address}: SERVING\n")
    assert (await probe(address, "--service", SERVICE))[0] == 0


async def test_not_serving_and_unknown_services_exit_one(served):
    address, health = served
    await health.set(SERVICE, health_pb2.HealthCheckResponse.NOT_SERVING)
    code, output = await probe(address, "--service", SERVICE)
    assert (code, output) == (1, f"{address} {SERVICE}: NOT_SERVING\n")
    code, output = await probe(address, "--service", "scene.nothing.v1.Here")
    assert code == 1 and "NOT_FOUND" in output


async def test_nothing_listening_fails_within_the_timeout():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    started = time.monotonic()
    code, output = await probe(f"127.0.0.1:{port}", "--timeout", "0.5", "--quiet")
    assert code == 1 and output == ""
    # Interpreter start-up included; the probe itself gave up after its 0.5 s.
    assert time.monotonic() - started < 5


class GatedModel(ManagedModel):
    """A model whose load waits for the test: fails while ``fail`` is set, else succeeds."""

    role = "gated"

    def __init__(self) -> None:
        super().__init__("gated-model", retry_interval_s=0.0)
        self.gate = threading.Event()
        self.fail = False

    def _load(self) -> LoadResult:
        self.gate.wait(30)
        if self.fail:
            raise OSError("no weights")
        return LoadResult(model_id="gated-model", device="cpu", dtype="float32")


@pytest.fixture
async def preloading():
    model = GatedModel()
    service = ModelService(name="probe-test", info=ServiceInfo(SERVICE, "0", [model], 1),
                           register=lambda s: None, address="127.0.0.1:0", grace_s=0,
                           preload=[model])
    port = await service.start()
    yield f"127.0.0.1:{port}", model
    model.gate.set()
    await service.stop(0)


async def test_readiness_and_liveness_of_a_preloading_service(preloading):
    address, model = preloading
    # Loading: alive, not ready.
    assert (await probe(address, "--quiet"))[0] == 1
    assert (await probe(address, "--service", SERVICE))[0] == 1
    assert await probe(address, "--liveness") == (0, f"{address} liveness: SERVING\n")
    model.gate.set()
    for _ in range(100):
        if model.ready:
            break
        await asyncio.sleep(0.05)
    assert await probe(address) == (0, f"{address}: SERVING\n")
    assert (await probe(address, "--liveness"))[0] == 0


async def test_a_failed_load_is_not_ready_until_a_retry_succeeds(preloading):
    address, model = preloading
    model.fail = True
    model.gate.set()
    for _ in range(100):
        if model.failed:
            break
        await asyncio.sleep(0.05)
    assert await probe(address) == (1, f"{address}: NOT_SERVING\n")
    assert (await probe(address, "--liveness"))[0] == 0
    model.fail = False  # the background retry (after MIN_RETRY_S) now succeeds
    for _ in range(100):
        if model.ready:
            break
        await asyncio.sleep(0.05)
    assert model.ready
    assert (await probe(address))[0] == 0

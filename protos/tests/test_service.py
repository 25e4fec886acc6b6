"""The model-service skeleton: settings, GetInfo, readiness following the models, liveness."""

from __future__ import annotations

import asyncio
import threading

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from scene.common.v1 import common_pb2
from scene_rpc.lifecycle import LoadResult, ManagedModel
from scene_rpc.service import (
    LIVENESS,
    ModelService,
    ServiceInfo,
    configure_cpu_threads,
    load_settings,
)

NAME = "scene.test.v1.Thing"
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class Gated(ManagedModel):
    role = "gated"

    def __init__(self, role: str = "gated", fail: bool = False) -> None:
        self.role = role
        super().__init__(f"{role}-model", retry_interval_s=0.0)
        self.gate = threading.Event()
        self.fail = fail
        self.closed = False

    def _load(self) -> LoadResult:
        self.gate.wait(10)
        if self.fail:
            raise OSError("no weights")
        return LoadResult(model_id=self.requested_model_id, device="cpu", dtype="float32")


class ThingSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="THING_")
    port: int = Field(1, ge=0, le=65535)


def test_bad_settings_stop_the_process_naming_the_problem(monkeypatch):
    monkeypatch.setenv("THING_PORT", "70000")
    with pytest.raises(SystemExit) as stopped:
        load_settings("thing-service", ThingSettings)
    message = str(stopped.value.code)
    assert message.startswith("thing-service: invalid settings:") and "port" in message
    assert "Traceback" not in message


def test_cpu_threads_without_torch_are_the_cores_available():
    assert configure_cpu_threads(None) >= 1


def test_info_is_built_in_one_place():
    model = Gated()
    limits = common_pb2.Limits(max_image_pixels=1000, max_message_bytes=2000)
    info = ServiceInfo(NAME, "1.2.3", [model], 3, limits).to_proto()
    assert (info.service, info.version, info.cpu_threads) == (NAME, "1.2.3", 3)
    assert [m.role for m in info.models] == ["gated"] and not info.models[0].loaded
    assert (info.limits.max_image_pixels, info.limits.max_message_bytes) == (1000, 2000)


def test_info_names_the_licence_of_each_model_the_profile_table_knows():
    known, own = Gated("sam"), Gated("semantic")
    known.requested_model_id = "facebook/sam2.1-hiera-tiny"
    own.requested_model_id = "/models/my-own"
    sam, mine = ServiceInfo(NAME, "1", [known, own], 1).to_proto().models
    assert (sam.licence, sam.commercial_use) == ("apache-2.0", True)
    assert sam.licence_source == "https://huggingface.co/facebook/sam2.1-hiera-tiny"
    # A model of one's own choosing: no claim about its licence.
    assert (mine.licence, mine.licence_source, mine.commercial_use) == ("", "", False)


async def statuses(port: int) -> dict[str, int]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        return {name: (await stub.Check(health_pb2.HealthCheckRequest(service=name))).status
                for name in ("", NAME, LIVENESS)}


async def wait_until(predicate, timeout_s: float = 10) -> None:
    for _ in range(int(timeout_s / 0.02)):
        if predicate():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("timed out")


def service_of(models, preload, close=lambda: None) -> ModelService:
    return ModelService(name="thing", info=ServiceInfo(NAME, "0", models, 1),
                        register=lambda server: None, address="127.0.0.1:0", grace_s=0,
                        preload=preload, close=close)


async def test_preload_is_not_ready_until_every_preloaded_model_is_loaded():
    first, second = Gated("first"), Gated("second")
    service = service_of([first, second], [first, second])
    port = await service.start()
    try:
        assert await statuses(port) == {"": NOT_SERVING, NAME: NOT_SERVING, LIVENESS: SERVING}
        first.gate.set()
        await wait_until(lambda: first.ready)
        assert (await statuses(port))[""] == NOT_SERVING  # the second is still loading
        second.gate.set()
        await wait_until(lambda: second.ready)
        await asyncio.sleep(0.05)
        assert await statuses(port) == {"": SERVING, NAME: SERVING, LIVENESS: SERVING}
    finally:
        await service.stop(0)


async def test_a_failed_load_is_not_ready_until_the_background_retry_succeeds():
    model = Gated(fail=True)
    model.gate.set()
    service = service_of([model], [model])
    port = await service.start()
    try:
        await wait_until(lambda: model.failed)
        await asyncio.sleep(0.05)
        assert await statuses(port) == {"": NOT_SERVING, NAME: NOT_SERVING, LIVENESS: SERVING}
        model.fail = False
        await wait_until(lambda: model.ready)
        await asyncio.sleep(0.05)
        assert (await statuses(port))[NAME] == SERVING
    finally:
        await service.stop(0)


async def test_a_lazy_service_is_ready_until_a_load_fails():
    model = Gated(fail=True)
    model.gate.set()
    closed = []
    service = service_of([model], [], close=lambda: closed.append(True))
    port = await service.start()
    try:
        assert await statuses(port) == {"": SERVING, NAME: SERVING, LIVENESS: SERVING}
        with pytest.raises(Exception, match="could not be loaded"):
            await model.load()  # a request's load
        await asyncio.sleep(0.05)
        assert (await statuses(port))[""] == NOT_SERVING
    finally:
        await service.stop(0)
    assert closed == [True]

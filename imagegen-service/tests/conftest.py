"""Fixtures: the fake OpenAI Images server (real HTTP on loopback) and the service in front of it.

``fake_openai`` is one server for the whole session (in a thread), cleared before each test.
``fake_openai_process`` runs it the way ``make run`` and the end-to-end tests do, as a process.
``start_service(**settings)`` starts the real gRPC server on a free port, pointed at the fake,
and returns a stub; ``imagegen`` is one with the default test settings.
"""

from __future__ import annotations

import secrets
import string

import grpc
import pytest

from imagegen_service.server import build
from imagegen_service.settings import Settings
from scene.imagegen.v1 import imagegen_pb2, imagegen_pb2_grpc
from scene_dev.fakes.openai_server import FakeOpenAI, serve_as_process, serve_in_thread
from scene_rpc import server as rpc_server


def make_key() -> str:
    """A key the fake accepts; letters only, so that no piece of it turns up in logs by chance."""
    return "sk-proj-" + "".join(secrets.choice(string.ascii_letters) for _ in range(40))


def settings_for(base_url: str, **overrides) -> Settings:
    """Settings for tests: explicit where the environment could differ, backoffs in ms."""
    values = dict(
        host="127.0.0.1", port=0, model="dall-e-3", openai_base_url=base_url, quality="",
        attempt_timeout_s=10.0, deadline_s=20.0, max_retries=3,
        backoff_initial_s=0.01, backoff_max_s=0.05, download_timeout_s=5.0,
    )
    values.update(overrides)
    return Settings(**values)


@pytest.fixture(scope="session")
def _fake_openai_server() -> FakeOpenAI:
    with serve_in_thread() as fake:
        yield fake


@pytest.fixture
def fake_openai(_fake_openai_server: FakeOpenAI) -> FakeOpenAI:
    _fake_openai_server.reset()
    return _fake_openai_server


@pytest.fixture(scope="session")
def fake_openai_process() -> FakeOpenAI:
    with serve_as_process() as fake:
        yield fake


@pytest.fixture
def api_key() -> str:
    return make_key()


@pytest.fixture
def make_api_key():
    return make_key


@pytest.fixture
async def start_service(fake_openai: FakeOpenAI):
    started = []

    async def start(**overrides) -> imagegen_pb2_grpc.ImageGenServiceStub:
        settings = settings_for(fake_openai.base_url, **overrides)
        service = build(settings, 1)
        port = await service.start()
        await service.info.models[0].load()
        channel = grpc.aio.insecure_channel(
            f"127.0.0.1:{port}",
            options=rpc_server.message_size_options(rpc_server.DEFAULT_MAX_MESSAGE_BYTES),
        )
        started.append((service, channel))
        stub = imagegen_pb2_grpc.ImageGenServiceStub(channel)
        stub.channel = channel
        return stub

    yield start
    for service, channel in started:
        await channel.close()
        await service.stop(0)


@pytest.fixture
async def imagegen(start_service) -> imagegen_pb2_grpc.ImageGenServiceStub:
    return await start_service()


@pytest.fixture
def request_for(api_key: str):
    """Builds a GenerateImageRequest with the test's key."""

    def build(prompt: str = "a quiet harbour at dawn", **fields):
        fields.setdefault("openai_api_key", api_key)
        return imagegen_pb2.GenerateImageRequest(prompt=prompt, **fields)

    return build

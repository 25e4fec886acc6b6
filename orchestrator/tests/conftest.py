"""Fixtures: fake model services (real gRPC servers on free ports) and the orchestrator served by
a real uvicorn server on a free port, so that streaming, disconnects and headers behave as in
production."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import uvicorn
from PIL import Image

from orchestrator.app import create_app
from orchestrator.runtime import Runtime
from orchestrator.settings import Settings
from scene_dev.fakes.grpc_services import FakeServices

KEY = "sk-test-9f8e7d6c5b4a3f2e1d0c"


def png_bytes(width: int = 80, height: int = 60, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


async def read_events(response: httpx.Response, limit: int | None = None) -> list[dict]:
    """Parse a text/event-stream body into ``{"id", "event", "data"}`` dicts (comments, i.e.
    keep-alive pings, are skipped), stopping after ``limit`` events."""
    events: list[dict] = []
    current: dict[str, Any] = {}
    async for line in response.aiter_lines():
        if line == "":
            if current:
                current["data"] = json.loads(current["data"]) if "data" in current else None
                events.append(current)
                current = {}
                if limit is not None and len(events) >= limit:
                    break
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        current[name] = value[1:] if value.startswith(" ") else value
    return events


def files_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


@dataclass
class Api:
    """A running orchestrator, its client, and the helpers tests share (test modules cannot
    import each other under ``--import-mode=importlib``, so the helpers travel with it)."""

    key = KEY
    png = staticmethod(png_bytes)
    events = staticmethod(read_events)
    files_in = staticmethod(files_in)

    client: httpx.AsyncClient
    url: str
    app: Any
    settings: Settings
    fakes: FakeServices

    @property
    def runtime(self) -> Runtime:
        return self.app.state.runtime

    @property
    def data_dir(self) -> Path:
        return self.settings.data_dir

    def folder(self, generation_id: str) -> Path:
        return self.settings.data_dir / "generations" / generation_id

    def record(self, generation_id: str) -> dict:
        return json.loads((self.folder(generation_id) / "metadata.json").read_text())

    async def generate(self, prompt: str = "a cat on a sofa", **fields: Any) -> httpx.Response:
        body = {"prompt": prompt, **fields}
        return await self.client.post("/generate", json=body, headers={"X-OpenAI-Key": KEY})

    async def upload(self, path: str, image: bytes, *, params: dict | None = None,
                     headers: dict | None = None, **fields: str) -> httpx.Response:
        return await self.client.post(path, files={"image": ("photo.png", image, "image/png")},
                                      data=fields, params=params, headers=headers)

    async def submit(self, prompt: str = "a cat on a sofa", headers: dict | None = None,
                     **fields: Any) -> httpx.Response:
        return await self.client.post("/jobs", json={"prompt": prompt, **fields},
                                      headers={"X-OpenAI-Key": KEY, **(headers or {})})

    async def wait_status(self, job_id: str, *statuses: str, timeout_s: float = 10) -> dict:
        deadline = asyncio.get_running_loop().time() + timeout_s
        while True:
            job = (await self.client.get(f"/jobs/{job_id}")).json()
            if job["status"] in statuses:
                return job
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"job {job_id} is {job['status']}, not {statuses}")
            await asyncio.sleep(0.02)

    async def wait_until(self, condition: Callable[[], bool], timeout_s: float = 10) -> None:
        deadline = asyncio.get_running_loop().time() + timeout_s
        # Polling: the state belongs to the app, which has no event for tests to wait on.
        while not condition():
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError("condition not met in time")
            await asyncio.sleep(0.01)

    async def wait_stage(self, job_id: str, stage: str, timeout_s: float = 10) -> dict:
        deadline = asyncio.get_running_loop().time() + timeout_s
        while True:
            job = (await self.client.get(f"/jobs/{job_id}")).json()
            if job["stage"] == stage:
                return job
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"job {job_id} is at {job['stage']}, not {stage}")
            await asyncio.sleep(0.02)


@asynccontextmanager
async def serve(app) -> AsyncIterator[str]:
    """Run ``app`` (with its lifespan) under uvicorn on a free port; yields its base URL."""
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None, lifespan="on",
                            timeout_graceful_shutdown=2)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("uvicorn stopped during startup")
        await asyncio.sleep(0.005)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


@pytest.fixture
async def fakes() -> AsyncIterator[FakeServices]:
    async with FakeServices() as services:
        yield services


@pytest.fixture
def database_url() -> str:
    """The orchestrator's DATABASE_URL: SQLite under the data directory. A module whose tests
    run on both engines overrides it with one that returns ``each_database_url``."""
    return ""


@pytest.fixture(params=["sqlite", "postgresql"])
def each_database_url(request: pytest.FixtureRequest) -> str:
    """The default SQLite file, then a fresh database of the session's PostgreSQL server."""
    return "" if request.param == "sqlite" else request.getfixturevalue("postgres_url")


@pytest.fixture
def make_settings(tmp_path: Path, fakes: FakeServices,
                  database_url: str) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "data_dir": tmp_path / "data", **fakes.addresses(), "health_timeout_s": 1.0,
            "sse_ping_s": 1.0, "max_concurrent_jobs": 2, "max_queued_jobs": 8,
            "database_url": database_url,
        }
        values.update(overrides)
        return Settings(**values)
    return make


@pytest.fixture
def make_api(make_settings, fakes) -> Callable[..., Any]:
    """``async with make_api(**settings) as api``: an orchestrator with those settings."""

    @asynccontextmanager
    async def make(**overrides: Any) -> AsyncIterator[Api]:
        settings = make_settings(**overrides)
        app = create_app(settings)
        async with serve(app) as url, httpx.AsyncClient(base_url=url, timeout=30) as client:
            yield Api(client, url, app, settings, fakes)
    return make


@pytest.fixture
async def api(make_api) -> AsyncIterator[Api]:
    async with make_api() as instance:
        yield instance


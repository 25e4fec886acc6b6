"""``python -m orchestrator`` as a real process: a crash (SIGKILL) and a graceful stop (SIGTERM)
with a job in flight, each followed by a restart on the same data directory."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys

import httpx
import pytest

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Orchestrator:
    def __init__(self, env: dict[str, str]):
        self.env = env
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        env = {**os.environ, **self.env, "ORCHESTRATOR_HOST": "127.0.0.1",
               "ORCHESTRATOR_PORT": str(self.port)}
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "orchestrator", env=env, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE)
        async with httpx.AsyncClient(base_url=self.url) as client:
            for _ in range(300):
                if self.process.returncode is not None:
                    raise AssertionError((await self.process.stderr.read()).decode())
                try:
                    if (await client.get("/health")).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.05)
        raise AssertionError("the orchestrator did not start")

    async def stop(self, sig: int) -> int:
        self.process.send_signal(sig)
        try:
            return await asyncio.wait_for(self.process.wait(), 10)
        except TimeoutError:
            self.process.kill()
            raise AssertionError("the orchestrator did not stop") from None


async def test_jobs_in_flight_end_failed_interrupted_after_a_crash_or_a_stop(fakes, tmp_path):
    env = {"DATA_DIR": str(tmp_path / "data"), "LOG_LEVEL": "WARNING", "SHUTDOWN_GRACE_S": "1",
           "DEPTH_SERVICE_ADDR": fakes.depth.address,
           "SEGMENT_SERVICE_ADDR": fakes.segment.address,
           "IMAGEGEN_SERVICE_ADDR": fakes.imagegen.address}
    fakes.depth.behaviour.stall = True
    key = {"X-OpenAI-Key": "sk-test"}

    async def submit(server: Orchestrator) -> str:
        async with httpx.AsyncClient(base_url=server.url) as client:
            response = await client.post("/jobs", json={"prompt": "p"}, headers=key)
            assert response.status_code == 202
            return response.json()["id"]

    crashed = Orchestrator(env)
    await crashed.start()
    first = await submit(crashed)
    await fakes.depth.wait_for_call()
    assert await crashed.stop(signal.SIGKILL) == -signal.SIGKILL
    # The dead client's call is cancelled on the service's side too (the connection dropped).
    await asyncio.wait_for(fakes.depth.calls[0].cancelled.wait(), 10)

    stopped = Orchestrator(env)
    await stopped.start()
    second = await submit(stopped)
    await asyncio.wait_for(_second_call(fakes), 10)
    # uvicorn exits by re-raising the signal once its graceful shutdown is done.
    assert await stopped.stop(signal.SIGTERM) in (0, -signal.SIGTERM)
    await asyncio.wait_for(fakes.depth.calls[1].cancelled.wait(), 10)

    fakes.depth.behaviour.stall = False
    restarted = Orchestrator(env)
    await restarted.start()
    try:
        async with httpx.AsyncClient(base_url=restarted.url) as client:
            for job_id in (first, second):
                job = (await client.get(f"/jobs/{job_id}")).json()
                assert (job["status"], job["error"]) == ("failed", "interrupted"), job
                listed = os.listdir(tmp_path / "data" / "generations" / job_id)
                assert listed == ["metadata.json"]
            third = await submit(restarted)
            for _ in range(200):
                if (await client.get(f"/jobs/{third}")).json()["status"] == "completed":
                    break
                await asyncio.sleep(0.05)
            else:
                raise AssertionError("the job after the restart did not complete")
            items = (await client.get("/jobs")).json()["items"]
            assert [item["id"] for item in items] == [third, second, first]
    finally:
        await restarted.stop(signal.SIGTERM)


async def _second_call(fakes) -> None:
    while len(fakes.depth.calls) < 2:  # noqa: ASYNC110 - the calls list is the fake's record
        await asyncio.sleep(0.02)


async def test_a_malformed_cors_setting_stops_the_start_naming_it(tmp_path):
    env = {**os.environ, "DATA_DIR": str(tmp_path), "ORCHESTRATOR_PORT": str(free_port()),
           "CORS_ORIGINS": "https://viewer.example.org/app"}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "orchestrator", env=env, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE)
    _, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode != 0
    message = stderr.decode()
    assert "invalid settings" in message and "CORS_ORIGINS" in message
    assert "Traceback" not in message

"""``python -m depth_service`` as a process: settings from the environment, preloading, and a
graceful SIGTERM that lets the in-flight request finish."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys

import grpc

from scene.common.v1 import common_pb2
from scene.depth.v1 import depth_pb2, depth_pb2_grpc
from scene_rpc.images import image_message

STARTUP_TIMEOUT_S = 120


class ServiceProcess:
    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.lines: list[str] = []
        self.port: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._reader = asyncio.create_task(self._read_logs())

    async def _read_logs(self) -> None:
        assert self.process.stderr is not None
        async for raw in self.process.stderr:
            line = raw.decode(errors="replace").rstrip()
            self.lines.append(line)
            found = re.search(r"listening on port (\d+)", line)
            if found and not self.port.done():
                self.port.set_result(int(found.group(1)))
        if not self.port.done():
            self.port.set_exception(RuntimeError("service exited:\n" + "\n".join(self.lines)))

    async def wait(self, limit_s: float) -> int:
        code = await asyncio.wait_for(self.process.wait(), limit_s)
        await self._reader
        return code


async def start_service(**env: str) -> ServiceProcess:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "depth_service",
        env={**os.environ, "DEPTH_PORT": "0", "DEPTH_HOST": "127.0.0.1", "DEPTH_THREADS": "2",
             "DEPTH_FALLBACK_MODEL": "", **env},
        stderr=asyncio.subprocess.PIPE,
    )
    return ServiceProcess(process)


async def test_sigterm_lets_the_in_flight_request_finish(tiny_depth_pro, fakes):
    service = await start_service(DEPTH_MODEL=tiny_depth_pro, DEPTH_PRELOAD="1",
                                  DEPTH_GRACE_S="60")
    try:
        port = await asyncio.wait_for(service.port, STARTUP_TIMEOUT_S)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = depth_pb2_grpc.DepthServiceStub(channel)
            # Preloading: the model loads with no request at all.
            for _ in range(STARTUP_TIMEOUT_S * 10):
                info = await stub.GetInfo(common_pb2.GetInfoRequest())
                if info.models[0].loaded:
                    break
                await asyncio.sleep(0.1)
            assert info.models[0].loaded and info.cpu_threads == 2

            call = stub.StreamEstimateDepth(depth_pb2.EstimateDepthRequest(
                image=image_message(fakes.smooth_field(600, 800)),
                tiling=depth_pb2.TILING_MODE_FORCED, tile_size_px=64))
            events = aiter(call)
            while (await anext(events)).progress.stage != "tiles":
                pass
            service.process.send_signal(signal.SIGTERM)
            rest = [event async for event in events]
            assert rest[-1].WhichOneof("event") == "result"
            assert rest[-1].result.tile_count > 32
        assert await service.wait(limit_s=60) == 0
        assert any("stopping with a 60s grace period" in line for line in service.lines)
    finally:
        if service.process.returncode is None:
            service.process.kill()
            await service.process.wait()


async def test_invalid_settings_stop_the_process_with_the_reason():
    service = await start_service(DEPTH_TILE_OVERLAP="0.9")
    assert await service.wait(limit_s=STARTUP_TIMEOUT_S) != 0
    assert any("tile_overlap" in line for line in service.lines)


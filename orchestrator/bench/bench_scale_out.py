#!/usr/bin/env python
"""Throughput of the front door with one and with two orchestrators (issue 28).

An orchestration-bound load: the fake model services (``scene_dev.fakes.grpc_services``, one
process, instant models) behind ``python -m orchestrator`` processes, so what limits the rate is
the orchestrator itself (upload decode, gRPC transfer, point cloud, PNGs, storage, records).
``--requests`` uploads of a ``--size`` photo go to ``POST /generate`` from ``--clients``
concurrent clients, spread round robin over the replicas; the rate is completed generations per
second of wall time. Configurations, each on a fresh data directory and database:

- one orchestrator on SQLite (the default),
- one orchestrator on PostgreSQL (a throwaway server: scene_dev.postgres),
- two orchestrators on the same PostgreSQL and data directory.

    python orchestrator/bench/bench_scale_out.py [--requests 60] [--clients 8] [--size 512x384]

Two orchestrators scale only as far as the machine has cores for them (and for the fakes and
PostgreSQL, which share it here): on a 2-core machine expect little; the number that matters is
on a machine or cluster with cores to spare. Nothing here is asserted in tests.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

from scene_dev.postgres import PostgresUnavailable, TempPostgres
from scene_dev.run_plan import free_ports

REPO_ROOT = Path(__file__).resolve().parents[2]


def spawn(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    with open(log, "ab") as out:
        return subprocess.Popen(argv, cwd=REPO_ROOT, env={**os.environ, **env},
                                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)


def stop(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(20)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def wait_ready(check, process: subprocess.Popen, log: Path, timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"not ready:\n{log.read_text()[-3000:]}")
        time.sleep(0.1)


def photo(width: int, height: int) -> bytes:
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


async def load(urls: list[str], requests: int, clients: int, image: bytes) -> dict:
    statuses: list[int] = []
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(requests):
        queue.put_nowait(i)

    async def client(http: httpx.AsyncClient) -> None:
        while True:
            try:
                i = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            response = await http.post(f"{urls[i % len(urls)]}/generate",
                                       files={"image": ("photo.png", image, "image/png")})
            statuses.append(response.status_code)

    async with httpx.AsyncClient(timeout=300) as http:
        # Warm-up: first requests pay for imports, channels, the schema.
        for url in urls:
            for _ in range(2):
                await http.post(f"{url}/generate", files={"image": ("p.png", image, "image/png")})
        started = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(clients)))
        wall = time.perf_counter() - started
    ok = statuses.count(200)
    return {"requests": requests, "ok": ok, "other": len(statuses) - ok,
            "wall_s": round(wall, 2), "per_s": round(ok / wall, 2)}


def run(name: str, replicas: int, database_url: str, fakes_env: dict[str, str], work: Path,
        args) -> dict:
    data_dir = work / name / "data"
    data_dir.mkdir(parents=True)
    processes, urls = [], []
    try:
        for index in range(replicas):
            (port,) = free_ports(1)
            log = work / name / f"orchestrator-{index}.log"
            env = {**fakes_env, "ORCHESTRATOR_HOST": "127.0.0.1", "ORCHESTRATOR_PORT": str(port),
                   "DATA_DIR": str(data_dir), "DATABASE_URL": database_url,
                   "MAX_CONCURRENT_JOBS": str(args.concurrent_jobs), "MAX_QUEUED_JOBS": "1000",
                   "LOG_LEVEL": "WARNING", "METRICS_ENABLED": "false"}
            process = spawn([sys.executable, "-m", "orchestrator"], env, log)
            processes.append(process)
            url = f"http://127.0.0.1:{port}"

            def healthy(url=url) -> bool:
                try:
                    return httpx.get(f"{url}/health", timeout=2).status_code == 200
                except httpx.HTTPError:
                    return False

            wait_ready(healthy, process, log)
            urls.append(url)
        image = photo(*map(int, args.size.split("x")))
        result = asyncio.run(load(urls, args.requests, args.clients, image))
    finally:
        for process in processes:
            stop(process)
    return {"config": name, "replicas": replicas, **result}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=60)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--size", default="512x384")
    parser.add_argument("--concurrent-jobs", type=int, default=2,
                        help="MAX_CONCURRENT_JOBS of each orchestrator")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-scale-out-"))
    ports = dict(zip(("depth", "segment", "imagegen"), free_ports(3), strict=True))
    fakes_log = work / "fakes.log"
    fakes = spawn([sys.executable, "-m", "scene_dev.fakes.grpc_services",
                   *(arg for name, port in ports.items() for arg in (f"--{name}-port", str(port)))],
                  {}, fakes_log)
    results = []
    try:
        wait_ready(lambda: any(line.startswith("{")
                               for line in fakes_log.read_text().splitlines()), fakes, fakes_log)
        fakes_env = {f"{name.upper()}_SERVICE_ADDR": f"127.0.0.1:{port}"
                     for name, port in ports.items()}
        results.append(run("sqlite-1", 1, "", fakes_env, work, args))
        try:
            server = TempPostgres()
        except PostgresUnavailable as exc:
            print(f"the PostgreSQL configurations are skipped: {exc}")
            server = None
        if server is not None:
            with server:
                results.append(run("postgresql-1", 1, server.create_database("one"), fakes_env,
                                   work, args))
                results.append(run("postgresql-2", 2, server.create_database("two"), fakes_env,
                                   work, args))
    finally:
        stop(fakes)
    print(f"\nPOST /generate, {args.requests} uploads of {args.size} from {args.clients} clients, "
          f"instant fake models, MAX_CONCURRENT_JOBS={args.concurrent_jobs} per orchestrator "
          f"({os.cpu_count()} CPUs)")
    for r in results:
        print(f"  {r['config']:<13} {r['per_s']:6.2f} generations/s  ({r['ok']} ok, "
              f"{r['other']} other, {r['wall_s']:.1f} s)")
    if len(results) == 3:
        print(f"  two orchestrators / one (PostgreSQL): "
              f"{results[2]['per_s'] / results[1]['per_s']:.2f}x")
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

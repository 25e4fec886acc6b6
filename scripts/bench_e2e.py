#!/usr/bin/env python
"""End-to-end benchmark of the orchestrator as a separate process over HTTP, with fake model
services as separate processes (so the figures are the system's, not the models').

1. Throughput and p50/p95 latency of ``POST /generate`` (upload path, the bundled 451x300
   photo) at 1, 4 and 16 concurrent clients, with instant fakes: the orchestration's own cost
   (HTTP, gRPC transfers, projection, packing, PNG encoding, storage) under load.
2. Scale-out: 1 vs 2 depth replicas behind one comma-separated address, balanced round robin by
   the orchestrator's channel. Each fake depth process serves one call at a time with a fixed
   service time, as one model on one device does, so only a second replica adds capacity.
   Target: >= 1.7x the throughput with 2 replicas.

    python scripts/bench_e2e.py [--service-ms 150] [--requests 40]

Ratios are against baselines measured in the same run; nothing here is asserted in tests.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent

IMAGE = REPO_ROOT / "scripts" / "demo" / "chelsea.png"
LEVELS = (1, 4, 16)
SCALE_OUT_CLIENTS = 8
TARGET_SCALE_OUT = 1.7


# ---------------------------------------------------------------------------------------------
# A depth fake with a per-process concurrency of 1 (run as `bench_e2e.py --serve-depth PORT`)


async def serve_serial_depth(port: int, service_s: float) -> None:
    from scene_dev.fakes.grpc_services import FakeDepthService

    class SerialFakeDepth(FakeDepthService):
        """One call at a time: later calls queue inside the process, as on one device."""

        def __init__(self) -> None:
            super().__init__()
            self.behaviour.delay_s = service_s
            self.behaviour.progress_steps = 1
            self.device = asyncio.Lock()

        async def _events(self, record):
            async with self.device:
                async for event in super()._events(record):
                    yield event

    fake = SerialFakeDepth()
    await fake.start("127.0.0.1", port)
    print(json.dumps({"depth": fake.port}), flush=True)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    await stopping.wait()
    print(json.dumps({"calls": len(fake.calls)}), flush=True)
    await fake.stop()


# ---------------------------------------------------------------------------------------------
# Processes


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


@dataclass
class Child:
    name: str
    popen: subprocess.Popen
    log: Path

    def stop(self) -> str:
        """SIGTERM (SIGKILL after 10 s); returns the process's output."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGTERM)
        try:
            self.popen.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait()
        return self.log.read_text(errors="replace")


class Processes:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.children: list[Child] = []

    def start(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> Child:
        log = self.workdir / f"{name}.log"
        with open(log, "wb") as out:
            popen = subprocess.Popen(argv, cwd=REPO_ROOT, env={**os.environ, **(env or {})},
                                     stdout=out, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        child = Child(name, popen, log)
        self.children.append(child)
        return child

    def wait_for_line(self, child: Child, text: str, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while text not in child.log.read_text(errors="replace"):
            if child.popen.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{child.name} did not start:\n{child.log.read_text()}")
            time.sleep(0.1)

    def wait_for_http(self, child: Child, url: str, timeout_s: float = 60) -> None:
        import httpx

        deadline = time.monotonic() + timeout_s
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url, timeout=2).status_code == 200:
                    return
            if child.popen.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{child.name} did not start:\n{child.log.read_text()}")
            time.sleep(0.2)

    def stop_all(self) -> dict[str, str]:
        outputs = {}
        for child in reversed(self.children):
            outputs[child.name] = child.stop()
        self.children.clear()
        return outputs


@contextlib.contextmanager
def system(workdir: Path, *, depth_replicas: int, service_s: float | None) -> Iterator[tuple]:
    """Fakes + orchestrator. ``service_s`` None: the instant fakes for all three services;
    otherwise ``depth_replicas`` serial depth processes with that service time."""
    processes = Processes(workdir)
    data_dir = workdir / f"data-{depth_replicas}-{service_s}"
    orchestrator_port, depth_port, segment_port, imagegen_port, *replica_ports = free_ports(
        4 + depth_replicas)
    try:
        fakes = processes.start("fakes", [
            sys.executable, "-m", "scene_dev.fakes.grpc_services", "--depth-port", str(depth_port),
            "--segment-port", str(segment_port), "--imagegen-port", str(imagegen_port)])
        processes.wait_for_line(fakes, '"imagegen"')
        depth_addresses = [f"127.0.0.1:{depth_port}"]
        replicas = []
        if service_s is not None:
            depth_addresses = []
            for i, port in enumerate(replica_ports):
                replica = processes.start(f"depth-{i + 1}", [
                    sys.executable, __file__, "--serve-depth", str(port),
                    "--service-ms", str(service_s * 1000)])
                processes.wait_for_line(replica, '"depth"')
                depth_addresses.append(f"127.0.0.1:{port}")
                replicas.append(replica)
        many = "64"
        orchestrator = processes.start("orchestrator", [sys.executable, "-m", "orchestrator"], {
            "ORCHESTRATOR_HOST": "127.0.0.1", "ORCHESTRATOR_PORT": str(orchestrator_port),
            "DATA_DIR": str(data_dir), "LOG_LEVEL": "WARNING",
            "DEPTH_SERVICE_ADDR": ",".join(depth_addresses),
            "SEGMENT_SERVICE_ADDR": f"127.0.0.1:{segment_port}",
            "IMAGEGEN_SERVICE_ADDR": f"127.0.0.1:{imagegen_port}",
            # The limits under test are the services', not the orchestrator's queue.
            "DEPTH_CONCURRENCY": many, "SEGMENT_CONCURRENCY": many, "IMAGEGEN_CONCURRENCY": many,
            "MAX_CONCURRENT_JOBS": many, "MAX_QUEUED_JOBS": "256",
        })
        url = f"http://127.0.0.1:{orchestrator_port}"
        processes.wait_for_http(orchestrator, f"{url}/health")
        yield url, replicas
    except BaseException:
        for name, output in processes.stop_all().items():
            print(f"---- {name}\n" + "\n".join(output.splitlines()[-15:]), file=sys.stderr)
        raise
    finally:
        processes.stop_all()


# ---------------------------------------------------------------------------------------------
# Load


@dataclass
class Result:
    clients: int
    requests: int
    wall_s: float
    latencies_ms: list[float]
    failures: int

    @property
    def throughput(self) -> float:
        return self.requests / self.wall_s

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def load(url: str, clients: int, requests: int, image: bytes) -> Result:
    import httpx

    latencies: list[float] = []
    failures = 0
    remaining = iter(range(requests))

    async def client_loop(http: httpx.AsyncClient) -> None:
        nonlocal failures
        for _ in remaining:
            started = time.perf_counter()
            response = await http.post("/generate", data={"mode": "standard"},
                                       files={"image": ("chelsea.png", image, "image/png")})
            latencies.append((time.perf_counter() - started) * 1000)
            if response.status_code != 200:
                failures += 1

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as http:
        # Warm-up: channels connected, code paths imported, caches filled.
        for _ in range(2):
            response = await http.post("/generate", files={"image": ("chelsea.png", image)})
            if response.status_code != 200:
                raise RuntimeError(f"warm-up request: {response.status_code} {response.text}")
        started = time.perf_counter()
        await asyncio.gather(*(client_loop(http) for _ in range(clients)))
        wall_s = time.perf_counter() - started
    return Result(clients, requests, wall_s, latencies, failures)


def calls_per_replica(output: str) -> int:
    for line in reversed(output.splitlines()):
        if line.startswith('{"calls"'):
            return json.loads(line)["calls"]
    return -1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--service-ms", type=float, default=150.0,
                        help="fixed service time of a fake depth replica (scale-out part)")
    parser.add_argument("--requests", type=int, default=40,
                        help="requests per scale-out run; the concurrency levels send "
                             "10 x clients (at least 20)")
    parser.add_argument("--serve-depth", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_depth is not None:
        asyncio.run(serve_serial_depth(args.serve_depth, args.service_ms / 1000))
        return 0

    image = IMAGE.read_bytes()
    print(f"end-to-end benchmark: orchestrator + fake services as processes, {platform.node()}, "
          f"{os.cpu_count()} CPUs, python {platform.python_version()}")
    print(f"request: POST /generate, upload of {IMAGE.name} (451x300), standard mode\n")
    with tempfile.TemporaryDirectory(prefix="bench-e2e-") as tmp:
        workdir = Path(tmp)
        print("1. concurrency, instant fakes")
        print(f"   {'clients':>7} {'requests':>8} {'req/s':>8} {'p50 ms':>8} {'p95 ms':>8} "
              f"{'vs 1 client':>11} {'failed':>6}")
        with system(workdir, depth_replicas=1, service_s=None) as (url, _):
            baseline = None
            for clients in LEVELS:
                result = asyncio.run(load(url, clients, max(20, 10 * clients), image))
                baseline = baseline or result.throughput
                print(f"   {clients:>7} {result.requests:>8} {result.throughput:>8.1f} "
                      f"{result.percentile(0.5):>8.1f} {result.percentile(0.95):>8.1f} "
                      f"{result.throughput / baseline:>10.2f}x {result.failures:>6}")

        service_s = args.service_ms / 1000
        print(f"\n2. scale-out: depth replicas serving one call at a time, "
              f"{args.service_ms:.0f} ms each; {SCALE_OUT_CLIENTS} clients, "
              f"{args.requests} requests")
        print(f"   {'replicas':>8} {'req/s':>8} {'p50 ms':>8} {'p95 ms':>8} {'ceiling':>8} "
              f"{'calls per replica':>18}")
        throughputs = {}
        for replicas in (1, 2):
            with system(workdir, depth_replicas=replicas, service_s=service_s) as (url, children):
                result = asyncio.run(load(url, SCALE_OUT_CLIENTS, args.requests, image))
                calls = [calls_per_replica(child.stop()) for child in children]
            throughputs[replicas] = result.throughput
            ceiling = replicas / service_s
            print(f"   {replicas:>8} {result.throughput:>8.2f} {result.percentile(0.5):>8.1f} "
                  f"{result.percentile(0.95):>8.1f} {ceiling:>8.2f} "
                  f"{' / '.join(map(str, calls)):>18}")
        ratio = throughputs[2] / throughputs[1]
        verdict = "meets" if ratio >= TARGET_SCALE_OUT else "MISSES"
        print(f"\n   2 replicas / 1 replica: {ratio:.2f}x throughput ({verdict} the "
              f"{TARGET_SCALE_OUT}x target)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``make run``'s supervisor: start the planned processes, wait until each is ready, keep them.

Every output line is prefixed with the service's name. The supervisor waits for each gRPC
service's standard health check and then the orchestrator's ``/health``, prints the URLs, and on
Ctrl-C or SIGTERM stops every child: SIGTERM to the process group, SIGKILL after the grace
period. If a service dies, the others are stopped and the exit status is non-zero, with the dead
service's last log lines.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import os
import signal
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path

from scene_dev.paths import REPO_ROOT
from scene_dev.run_plan import ServiceSpec, active_profile, connect_host

LOG_TAIL_LINES = 40
COLOURS = ["36", "35", "33", "32", "34", "91", "96", "95"]


# ---------------------------------------------------------------------------------------------
# Health checks


async def grpc_serving(address: str, timeout_s: float, *, liveness: bool = False) -> bool:
    """One grpc.health.v1 check (the containers' probe, in a thread): readiness (the server as a
    whole: its models loaded) or, with ``liveness``, only that the process answers."""
    from scene_rpc.health_probe import LIVENESS, check

    serving, _ = await asyncio.to_thread(check, address, LIVENESS if liveness else "", timeout_s)
    return serving


def http_get_json(url: str, timeout_s: float) -> tuple[int, object]:
    """GET ``url``; (status, parsed JSON or text). Status 0 when nothing answered."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            status, body = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, body = exc.code, exc.read()
    except (OSError, ValueError):
        return 0, None
    try:
        return status, json.loads(body)
    except ValueError:
        return status, body.decode("utf-8", "replace")


async def tcp_accepting(host: str, port: int, timeout_s: float) -> bool:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout_s)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


async def is_ready(spec: ServiceSpec, *, liveness: bool = False) -> bool:
    if spec.kind == "grpc":
        return await grpc_serving(spec.address, timeout_s=1.0, liveness=liveness)
    if spec.kind == "tcp":
        return await tcp_accepting(connect_host(spec.host), spec.port, timeout_s=1.0)
    status, _ = await asyncio.to_thread(http_get_json, f"http://{spec.address}/health", 2.0)
    return status == 200


# ---------------------------------------------------------------------------------------------
# Supervision


class ServiceExited(RuntimeError):
    def __init__(self, name: str, returncode: int | None) -> None:
        super().__init__(f"{name} exited with status {returncode}")
        self.name = name
        self.returncode = returncode


class Child:
    """A running service: its process, its prefixed output and the tail kept for error reports."""

    def __init__(self, spec: ServiceSpec, process: asyncio.subprocess.Process, prefix: str
                 ) -> None:
        self.spec = spec
        self.process = process
        self.prefix = prefix
        self.tail: collections.deque[str] = collections.deque(maxlen=LOG_TAIL_LINES)
        self.pump = asyncio.create_task(self._pump_output())

    async def _pump_output(self) -> None:
        assert self.process.stdout is not None
        while line := await self.process.stdout.readline():
            text = line.decode("utf-8", "replace").rstrip("\n")
            self.tail.append(text)
            sys.stdout.write(f"{self.prefix}{text}\n")
            sys.stdout.flush()

    def signal_group(self, sig: signal.Signals) -> None:
        # The child leads its own process group, so this reaches anything it started too.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, sig)


class Supervisor:
    def __init__(self, specs: list[ServiceSpec], *, grace_s: float, colour: bool,
                 model_load_timeout_s: float = 3600.0) -> None:
        self.specs = specs
        self.grace_s = grace_s
        self.model_load_timeout_s = model_load_timeout_s
        self.children: list[Child] = []
        width = max(len(s.name) for s in specs)
        self._prefixes = {
            spec.name: (f"\033[{COLOURS[i % len(COLOURS)]}m{spec.name:<{width}} |\033[0m "
                        if colour else f"{spec.name:<{width}} | ")
            for i, spec in enumerate(specs)
        }

    async def start(self, spec: ServiceSpec) -> Child:
        process = await asyncio.create_subprocess_exec(
            *spec.argv, env=spec.env, cwd=REPO_ROOT,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            # Own process group: the terminal's Ctrl-C reaches only us, and we stop each
            # service deliberately, in order, with a grace period.
            start_new_session=True,
        )
        child = Child(spec, process, self._prefixes[spec.name])
        self.children.append(child)
        return child

    async def wait_ready(self, child: Child, timeout_s: float) -> None:
        """Until the service answers (within ``timeout_s``), then, for a model service, until it
        is ready: a preload of real weights (a first download above all) may take far longer
        than a start, so that wait has its own limit and says what it is waiting for."""
        await self._wait(child, timeout_s, liveness=True)
        if child.spec.kind == "grpc" and not await is_ready(child.spec):
            started = time.monotonic()
            print(f"{child.spec.name}: started; loading and preparing its models (a first run "
                  "downloads the weights and exports the compiled graphs) ...", flush=True)
            await self._wait(child, self.model_load_timeout_s, liveness=False)
            print(f"{child.spec.name}: ready; preparing its models took "
                  f"{time.monotonic() - started:.1f} s", flush=True)

    async def _wait(self, child: Child, timeout_s: float, *, liveness: bool) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            if child.process.returncode is not None:
                raise ServiceExited(child.spec.name, child.process.returncode)
            if await is_ready(child.spec, liveness=liveness):
                return
            if time.monotonic() > deadline:
                state = "started" if liveness else "ready (its models loaded)"
                raise TimeoutError(f"{child.spec.name} was not {state} within {timeout_s:.0f}s")
            await asyncio.sleep(0.3)

    async def start_all(self, timeout_s: float) -> None:
        """Start the services in order; the orchestrator only once its backends answer."""
        *backends, orchestrator = self.specs
        started = [await self.start(spec) for spec in backends]
        await asyncio.gather(*(self.wait_ready(c, timeout_s) for c in started))
        await self.wait_ready(await self.start(orchestrator), timeout_s)

    async def first_exit(self) -> Child:
        waits = {asyncio.create_task(c.process.wait()): c for c in self.children}
        try:
            done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in waits:
                task.cancel()
        return waits[next(iter(done))]

    async def stop_all(self) -> None:
        """The orchestrator first (no new work reaches the backends), then the rest together."""
        front = [c for c in self.children if c.spec.name == "orchestrator"]
        rest = [c for c in self.children if c.spec.name != "orchestrator"]
        for group in (front, rest):
            await asyncio.gather(*(self._stop(c) for c in group))
        for child in self.children:
            with contextlib.suppress(asyncio.CancelledError):
                await child.pump

    async def _stop(self, child: Child) -> None:
        if child.process.returncode is None:
            child.signal_group(signal.SIGTERM)
            try:
                await asyncio.wait_for(child.process.wait(), self.grace_s)
            except TimeoutError:
                print(f"{child.spec.name} did not stop within {self.grace_s:.0f}s: SIGKILL",
                      flush=True)
        # Whatever is left in the group (the service itself or anything it spawned) goes now.
        child.signal_group(signal.SIGKILL)
        await child.process.wait()

    def report_failure(self, name: str) -> None:
        child = next(c for c in self.children if c.spec.name == name)
        print(f"\n{name} exited with status {child.process.returncode}; its last lines:",
              file=sys.stderr)
        for line in child.tail:
            print(f"    {line}", file=sys.stderr)


def print_banner(specs: list[ServiceSpec]) -> None:
    orchestrator = specs[-1]
    base = f"http://{orchestrator.address}"
    lines = [
        "",
        f"scene server ready: {base}",
        f"  viewer    {base}/",
        f"  API docs  {base}/docs",
        f"  health    {base}/health",
    ]
    lines += [f"  {s.name:<9} {s.address}" for s in specs[:-1]]
    # The orchestrator runs in the repository root, where its default DATA_DIR is ./data.
    data_dir = REPO_ROOT / orchestrator.env.get("DATA_DIR", "data")
    lines += [f"  data      {data_dir.resolve()}/generations/", *profile_lines(orchestrator.env),
              "Ctrl-C stops every service.", ""]
    print("\n".join(lines), flush=True)


def profile_lines(environ: Mapping[str, str]) -> list[str]:
    """The active profile, its models and the measured time per scene on this kind of device."""
    from scene_rpc.profiles import PROFILES, get_profile

    profile = get_profile(active_profile(environ))
    lines = [f"  profile   {profile.name}: {profile.summary} (PROFILE={'|'.join(PROFILES)})"]
    overridden = [k for k in ("DEPTH_MODEL", "SAM_MODEL", "SEG_MODEL") if environ.get(k)]
    if overridden:
        lines.append(f"            overridden by {', '.join(overridden)}")
    device = "gpu" if any(environ.get(k, "auto").startswith("cuda")
                          for k in ("DEPTH_DEVICE", "SEG_DEVICE")) or _has_cuda() else "cpu2"
    seconds = profile.expected_scene_s.get(device)
    kind = "a GPU" if device == "gpu" else "a 2-core CPU"
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    draft = profile.draft_scene_s.get(device)
    lines.append(
        f"  expected  ~{seconds:.0f} s per 1 MP photo at quality=standard"
        + (f", ~{draft:.0f} s at quality=draft" if draft is not None else "")
        + f", as measured on {kind} ({profile.measured}; this machine: {cores} cores)"
        if seconds is not None else
        f"  expected  not measured on {kind} for this profile (scripts/bench_scene.py measures it)")
    return lines


def _has_cuda() -> bool:
    # torch is not imported by the supervisor; a visible NVIDIA device is enough of a hint.
    return Path("/dev/nvidia0").exists()


async def supervise(specs: list[ServiceSpec], *, startup_timeout_s: float, grace_s: float,
                    colour: bool) -> int:
    supervisor = Supervisor(specs, grace_s=grace_s, colour=colour)
    stop_requested = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop_requested.set)
    try:
        return await _run_until_stopped(supervisor, stop_requested, startup_timeout_s)
    finally:
        await supervisor.stop_all()
        print("all services stopped", flush=True)


async def _first(*awaitables) -> asyncio.Task:
    """Wait until the first of ``awaitables`` finishes; cancel the others. Returns its task."""
    tasks = [asyncio.ensure_future(a) for a in awaitables]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
    return next(iter(done))


async def _run_until_stopped(supervisor: Supervisor, stop_requested: asyncio.Event,
                             startup_timeout_s: float) -> int:
    starting = supervisor.start_all(startup_timeout_s)
    finished = await _first(starting, stop_requested.wait())
    if stop_requested.is_set():
        print("interrupted during start-up; stopping", flush=True)
        return 130
    try:
        finished.result()
    except ServiceExited as exc:
        supervisor.report_failure(exc.name)
        return 1
    except TimeoutError as exc:
        print(f"\n{exc}; stopping the others", file=sys.stderr, flush=True)
        return 1
    print_banner(supervisor.specs)
    finished = await _first(supervisor.first_exit(), stop_requested.wait())
    if stop_requested.is_set():
        print("stopping every service ...", flush=True)
        return 0
    supervisor.report_failure(finished.result().spec.name)
    return 1

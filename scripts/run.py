#!/usr/bin/env python
"""`make run`: start the four services as separate processes on loopback and supervise them.

    python scripts/run.py                  # documented default models, orchestrator on :8000
    python scripts/run.py --smoke          # offline: tiny models + a fake OpenAI server
    python scripts/run.py --depth-replicas 2 --port-base 9000
    python scripts/run.py --profile fast   # CPU-sized models (or PROFILE=fast in the environment)

Each service runs as ``python -m <package>`` in its own process group, configured only through
its environment (everything in ours passes through; the supervisor sets ports, bind hosts and the
orchestrator's service addresses). Every output line is prefixed with the service's name. The
supervisor waits for each gRPC service's standard health check and then the orchestrator's
``/health``, prints the URLs, and on Ctrl-C or SIGTERM stops every child: SIGTERM to the process
group, SIGKILL after the grace period. If a service dies, the others are stopped and the exit
status is non-zero, with the dead service's last log lines.

The plan of processes (:func:`plan_services`) is also what ``tests/stack.py`` starts, so the
end-to-end tests run exactly the commands that ``make run`` runs.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
TINY_MODELS_DIR = REPO_ROOT / ".cache" / "tiny-models"
DEFAULT_PORTS = {"orchestrator": 8000, "depth": 50051, "segment": 50052, "imagegen": 50053,
                 "openai": 50054}
# Further depth replicas take consecutive ports from here (port base + 10 with --port-base).
DEFAULT_REPLICA_PORT = 50061
LOG_TAIL_LINES = 40
COLOURS = ["36", "35", "33", "32", "34", "91", "96", "95"]


@dataclass
class ServiceSpec:
    """One process of the stack: how to start it and how to tell it is ready."""

    name: str
    argv: list[str]
    env: dict[str, str]
    port: int
    # The address it binds.
    host: str
    # "grpc": grpc.health.v1 reports SERVING; "http": GET /health answers 200; "tcp": the port
    # accepts connections (the fake OpenAI server, which has no health route).
    kind: str

    @property
    def address(self) -> str:
        """Where clients reach it."""
        return f"{connect_host(self.host)}:{self.port}"


def connect_host(bind_host: str) -> str:
    """A service bound to every interface is reached on loopback."""
    return {"0.0.0.0": "127.0.0.1", "::": "::1", "[::]": "[::1]"}.get(bind_host, bind_host)


@dataclass
class StackOptions:
    smoke: bool = False
    host: str = "127.0.0.1"
    data_dir: Path | None = None
    depth_replicas: int = 1
    ports: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_PORTS))
    replica_port: int = DEFAULT_REPLICA_PORT
    # Explicit ports of the depth replicas (tests pick free ones); default: ports["depth"], then
    # consecutive ports from replica_port.
    depth_ports: list[int] | None = None
    # Bind address per service ("orchestrator", "depth", "segment", "imagegen", "openai"), over
    # ``host``: e.g. each service in its own network namespace.
    hosts: dict[str, str] = field(default_factory=dict)
    tiny_models_dir: Path = TINY_MODELS_DIR
    # Extra environment for every child, applied last (tests use it to shorten deadlines).
    extra_env: dict[str, str] = field(default_factory=dict)
    python: str = sys.executable
    # The model profile (scene_rpc.profiles) every model service gets as PROFILE; None = the
    # caller's PROFILE, else the services' default. In smoke mode its model ids map to the tiny
    # models of the same architectures.
    profile: str | None = None


def ports_from_base(base: int) -> tuple[dict[str, int], int]:
    """Ports for a stack at ``base``: orchestrator, depth, segment, imagegen, fake OpenAI, then
    extra depth replicas from ``base + 10``."""
    names = ["orchestrator", "depth", "segment", "imagegen", "openai"]
    return {name: base + i for i, name in enumerate(names)}, base + 10


def smoke_model_env(tiny_models_dir: Path) -> dict[str, str]:
    """Tiny random-weight models for an offline run: the production loading path, no download."""
    return {
        "DEPTH_MODEL": str(tiny_models_dir / "depth-anything"),
        "DEPTH_FALLBACK_MODEL": str(tiny_models_dir / "depth-pro"),
        "SAM_MODEL": str(tiny_models_dir / "sam2"),
        "SEG_MODEL": str(tiny_models_dir / "maskformer"),
        # Everything is local: a model id that is not fails at once instead of downloading.
        "HF_HUB_OFFLINE": "1",
    }


# The tiny model of each architecture, by the start of a model id (the smoke run's stand-ins).
TINY_TWINS = {
    "apple/DepthPro": "depth-pro",
    "depth-anything/": "depth-anything",
    "facebook/sam2": "sam2",
    "facebook/maskformer": "maskformer",
    "nvidia/segformer": "segformer",
    "openmmlab/upernet": "upernet",
}


def tiny_twin(tiny_models_dir: Path, model_id: str) -> str:
    """The tiny random-weight model of ``model_id``'s architecture ("" stays "": no model)."""
    if not model_id:
        return ""
    for prefix, name in TINY_TWINS.items():
        if model_id.startswith(prefix):
            return str(tiny_models_dir / name)
    raise ValueError(f"no tiny model stands in for {model_id}")


def profile_smoke_env(tiny_models_dir: Path, profile_name: str) -> dict[str, str]:
    """Tiny models of the profile's architectures: every profile runs the same smoke tests."""
    from scene_rpc.profiles import get_profile

    profile = get_profile(profile_name)
    return {
        "PROFILE": profile.name,
        "DEPTH_MODEL": tiny_twin(tiny_models_dir, profile.depth_model),
        "DEPTH_FALLBACK_MODEL": tiny_twin(tiny_models_dir, profile.depth_fallback_model),
        "SAM_MODEL": tiny_twin(tiny_models_dir, profile.sam_model),
        "SEG_MODEL": tiny_twin(tiny_models_dir, profile.semantic_model),
        "HF_HUB_OFFLINE": "1",
    }


def active_profile(environ: Mapping[str, str], explicit: str | None = None) -> str:
    """The profile the services will run (ValueError naming the valid ones if unknown)."""
    from scene_rpc.profiles import DEFAULT_PROFILE, get_profile

    return get_profile(explicit or environ.get("PROFILE") or DEFAULT_PROFILE).name


# Smoke-run defaults that the caller's environment may override: random weights segment nothing
# worth a dense prompt grid, and loading at start keeps the first request as fast as the rest.
SMOKE_DEFAULTS = {
    "SEG_POINTS_PER_SIDE": "4",
    "SEG_CROP_POINTS_PER_SIDE": "2",
    "SEG_SAM_MODE_POINTS_PER_SIDE": "4",
    "SEG_SAM_MODE_CROP_POINTS_PER_SIDE": "2",
    "DEPTH_PRELOAD": "true",
    "SEG_PRELOAD": "true",
}


def plan_services(options: StackOptions, environ: Mapping[str, str] | None = None,
                  ) -> list[ServiceSpec]:
    """The processes of one stack, in start order (the orchestrator last)."""
    base_env = dict(os.environ if environ is None else environ)
    base_env["PYTHONUNBUFFERED"] = "1"
    ports, py = options.ports, options.python
    hosts = {name: options.hosts.get(name, options.host) for name in DEFAULT_PORTS}
    reach = {name: f"{connect_host(host)}:{ports[name]}" for name, host in hosts.items()}
    if options.profile is not None:
        base_env["PROFILE"] = active_profile(base_env, options.profile)
    if options.smoke:
        models = (smoke_model_env(options.tiny_models_dir) if options.profile is None
                  else profile_smoke_env(options.tiny_models_dir, options.profile))
        base_env = {**SMOKE_DEFAULTS, **base_env, **models}
        base_env["OPENAI_BASE_URL"] = f"http://{reach['openai']}/v1"

    def env(**values: object) -> dict[str, str]:
        merged = {**base_env, **{k: str(v) for k, v in values.items()}}
        merged.update(options.extra_env)
        return merged

    threads = model_threads(base_env, len(options.depth_ports or [0] * options.depth_replicas))
    specs: list[ServiceSpec] = []
    if options.smoke:
        specs.append(ServiceSpec(
            "openai-fake",
            [py, "-m", "tests.fakes.openai_server", "--host", hosts["openai"], "--port",
             str(ports["openai"])],
            env(), ports["openai"], hosts["openai"], kind="tcp"))
    depth_ports = options.depth_ports or [ports["depth"]] + [
        options.replica_port + i for i in range(options.depth_replicas - 1)]
    depth_host = hosts["depth"]
    # Replicas cannot share a metrics port: the n-th gets DEPTH_METRICS_PORT + n.
    depth_metrics_port = int(env().get("DEPTH_METRICS_PORT") or 0)
    for i, port in enumerate(depth_ports):
        name = "depth" if len(depth_ports) == 1 else f"depth-{i + 1}"
        depth_env = env(DEPTH_HOST=depth_host, DEPTH_PORT=port, **threads["depth"])
        if depth_metrics_port:
            depth_env["DEPTH_METRICS_PORT"] = str(depth_metrics_port + i)
        specs.append(ServiceSpec(name, [py, "-m", "depth_service"], depth_env, port, depth_host,
                                 kind="grpc"))
    specs.append(ServiceSpec("segment", [py, "-m", "segment_service"],
                             env(SEG_HOST=hosts["segment"], SEG_PORT=ports["segment"],
                                 **threads["segment"]),
                             ports["segment"], hosts["segment"], kind="grpc"))
    specs.append(ServiceSpec("imagegen", [py, "-m", "imagegen_service"],
                             env(IMAGEGEN_HOST=hosts["imagegen"], IMAGEGEN_PORT=ports["imagegen"]),
                             ports["imagegen"], hosts["imagegen"], kind="grpc"))
    orchestrator_env = {
        "ORCHESTRATOR_HOST": hosts["orchestrator"],
        "ORCHESTRATOR_PORT": ports["orchestrator"],
        # Several replicas are one comma-separated list: the orchestrator's channel balances
        # them round robin.
        "DEPTH_SERVICE_ADDR": ",".join(f"{connect_host(depth_host)}:{p}" for p in depth_ports),
        "SEGMENT_SERVICE_ADDR": reach["segment"],
        "IMAGEGEN_SERVICE_ADDR": reach["imagegen"],
    }
    if options.data_dir is not None:
        orchestrator_env["DATA_DIR"] = str(options.data_dir)
    specs.append(ServiceSpec("orchestrator", [py, "-m", "orchestrator"], env(**orchestrator_env),
                             ports["orchestrator"], hosts["orchestrator"], kind="http"))
    return specs


def model_threads(environ: Mapping[str, str], depth_processes: int,
                  cores: int | None = None) -> dict[str, dict[str, int]]:
    """DEPTH_THREADS / SEG_THREADS for model services that share this machine's cores.

    Depth and segmentation run concurrently on every request. Each service's own default (one
    torch thread per core) gives 2 x cores busy threads, and OpenMP threads that outnumber the
    cores spin and wait on each other; measured with scripts/bench_scene.py --threads-study (see
    the README), splitting the cores between the processes is faster. A value the caller set is
    kept.
    """
    cores = cores or (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                      else os.cpu_count() or 1)
    share = max(1, cores // (depth_processes + 1))
    result: dict[str, dict[str, int]] = {"depth": {}, "segment": {}}
    if not environ.get("DEPTH_THREADS"):
        # Under the quality profile one DepthPro pass outlasts the whole segmentation, so a
        # single depth process gets every core too (1 MP, 2 cores, DepthPro compiled: 199 s with
        # 2 + 2, 201 s with 2 + 1; eager, as auto runs it: 207 s with 2 + 2; one core alone would
        # make the depth pass itself about twice as long).
        quality_depth = active_profile(environ) == "quality" and depth_processes == 1
        result["depth"]["DEPTH_THREADS"] = cores if quality_depth else share
    if not environ.get("SEG_THREADS"):
        # Segmentation (SAM2's encoder and many decoder passes) runs several times longer than
        # depth under the other profiles, so it gets every core: while depth runs the two
        # overlap, after it segmentation keeps both cores busy (fast profile, 1 MP, 2 cores:
        # 12.3 s against 15.4 s with 1 + 1).
        result["segment"]["SEG_THREADS"] = cores
    return result


def ensure_tiny_models(tiny_models_dir: Path, python: str = sys.executable) -> None:
    """Build the tiny models (what `make tiny-models` does) unless they are complete."""
    if (tiny_models_dir / ".complete").exists():
        return
    print(f"building tiny models into {tiny_models_dir} ...", flush=True)
    subprocess.run([python, str(REPO_ROOT / "scripts" / "make_tiny_models.py"),
                    str(tiny_models_dir)], check=True, cwd=REPO_ROOT)


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
            print(f"{child.spec.name}: started; loading its models (a first run downloads the "
                  "weights) ...", flush=True)
            await self._wait(child, self.model_load_timeout_s, liveness=False)
            print(f"{child.spec.name}: ready", flush=True)

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
    from scene_rpc.profiles import get_profile

    profile = get_profile(active_profile(environ))
    lines = [f"  profile   {profile.name}: {profile.summary} (PROFILE=quality|balanced|fast|open)"]
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


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true",
                        help="offline run: tiny random-weight models (built when missing) and a "
                             "fake OpenAI server as a fifth process; data in a temporary "
                             "directory unless --data-dir is given")
    parser.add_argument("--data-dir", type=Path, help="the orchestrator's DATA_DIR")
    parser.add_argument("--profile", choices=["quality", "balanced", "fast", "open"],
                        help="model profile of every model service (default: $PROFILE, else "
                             "quality); with --smoke, tiny models of its architectures")
    parser.add_argument("--host", default="127.0.0.1",
                        help="bind address of every service (default: loopback only)")
    parser.add_argument("--port-base", type=int,
                        help="orchestrator on BASE, depth BASE+1, segment BASE+2, imagegen "
                             "BASE+3, fake OpenAI BASE+4, extra depth replicas from BASE+10")
    for name, port in DEFAULT_PORTS.items():
        parser.add_argument(f"--{name}-port", type=int,
                            help=f"port of {name} (default {port})")
    parser.add_argument("--depth-replicas", type=int, default=1,
                        help="number of depth processes; the orchestrator balances over all")
    parser.add_argument("--startup-timeout", type=float, default=300.0,
                        help="seconds each service has to start answering (default 300); "
                             "model services then have up to an hour to load their models")
    parser.add_argument("--grace", type=float, default=10.0,
                        help="seconds between SIGTERM and SIGKILL when stopping (default 10)")
    args = parser.parse_args(argv)
    if args.depth_replicas < 1:
        parser.error("--depth-replicas must be at least 1")
    return args


def options_from_args(args: argparse.Namespace) -> StackOptions:
    ports, replica_port = dict(DEFAULT_PORTS), DEFAULT_REPLICA_PORT
    if args.port_base is not None:
        ports, replica_port = ports_from_base(args.port_base)
    for name in DEFAULT_PORTS:
        explicit = getattr(args, f"{name}_port")
        if explicit is not None:
            ports[name] = explicit
    # Resolved here: the services run in the repository root, not in the caller's directory.
    data_dir = args.data_dir.resolve() if args.data_dir is not None else None
    return StackOptions(smoke=args.smoke, host=args.host, data_dir=data_dir,
                        depth_replicas=args.depth_replicas, ports=ports,
                        replica_port=replica_port, profile=args.profile or None)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    options = options_from_args(args)
    with contextlib.ExitStack() as cleanup:
        if options.smoke:
            ensure_tiny_models(options.tiny_models_dir)
            if options.data_dir is None:
                options.data_dir = Path(cleanup.enter_context(
                    tempfile.TemporaryDirectory(prefix="scene-smoke-")))
        specs = plan_services(options)
        return asyncio.run(supervise(
            specs, startup_timeout_s=args.startup_timeout, grace_s=args.grace,
            colour=sys.stdout.isatty()))


if __name__ == "__main__":
    sys.exit(main())

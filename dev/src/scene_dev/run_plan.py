"""The processes of one stack: what ``make run`` starts, and with what environment.

Each service runs as ``python -m <package>``, configured only through its environment (the
caller's passes through; the plan sets ports, bind hosts and the orchestrator's service
addresses). :func:`plan_services` is what ``make run`` supervises (``scene_dev.supervisor``),
what the end-to-end tests start (``tests/stack.py``) and what ``scripts/bench_scene.py`` times,
so all three run the same commands.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from scene_dev.paths import TINY_MODELS_DIR

DEFAULT_PORTS = {"orchestrator": 8000, "depth": 50051, "segment": 50052, "imagegen": 50053,
                 "openai": 50054}
# Further depth replicas take consecutive ports from here (port base + 10 with --port-base).
DEFAULT_REPLICA_PORT = 50061


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
            [py, "-m", "scene_dev.fakes.openai_server", "--host", hosts["openai"], "--port",
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


def free_ports(count: int) -> list[int]:
    """Ports nobody listens on right now (all held open together, so they are distinct)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for sock in sockets:
            sock.close()

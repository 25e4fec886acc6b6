"""The real stack as separate processes, for end-to-end and fault tests.

The processes are exactly the ones ``make run`` starts (:func:`scene_dev.run_plan.plan_services`,
``python -m <service>`` with the environment as the only configuration), here in smoke mode:
tiny random-weight models and the fake OpenAI server, on free loopback ports, with a temporary
data directory. Unlike ``make run`` the stack hands each process to the test: kill one, stop it
(SIGSTOP, a service that stalls), restart it on the same port, read its log.

    with running_stack(tmp_path, depth_replicas=2) as stack:
        httpx.get(f"{stack.url}/health")
        stack.kill("depth-1")

Each process leads its own process group with its output in ``<log_dir>/<name>.log``; stopping
the stack signals the groups (SIGTERM, then SIGKILL), so a test that fails half-way leaves no
process behind.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
from grpc_health.v1 import health_pb2

from scene_dev.paths import REPO_ROOT, TINY_MODELS_DIR
from scene_dev.run_plan import ServiceSpec, StackOptions, connect_host, free_ports, plan_services


def wait_until(predicate: Callable[[], object], timeout_s: float, what: str,
               interval_s: float = 0.1):
    """``predicate()``'s first truthy value, polled every ``interval_s``; an AssertionError
    naming ``what`` when none comes within ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval_s)
    raise AssertionError(f"not within {timeout_s:.0f}s: {what}")


def grpc_health(address: str, timeout_s: float = 1.0) -> int | None:
    """The server's overall health status, or None when it does not answer."""
    from scene_rpc.health_probe import check

    serving, _ = check(address, timeout_s=timeout_s)
    return health_pb2.HealthCheckResponse.SERVING if serving else None


@dataclass
class Process:
    spec: ServiceSpec
    popen: subprocess.Popen
    log_path: Path

    @property
    def alive(self) -> bool:
        return self.popen.poll() is None

    def signal_group(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, sig)


class StackError(RuntimeError):
    pass


class Stack:
    def __init__(self, specs: list[ServiceSpec], log_dir: Path, data_dir: Path) -> None:
        self.specs = {spec.name: spec for spec in specs}
        # Each process's environment as planned; restart(name, env=...) starts from it.
        self.planned_env = {spec.name: dict(spec.env) for spec in specs}
        self.log_dir = log_dir
        self.data_dir = data_dir
        self.processes: dict[str, Process] = {}
        self.log_dir.mkdir(parents=True, exist_ok=True)

    # -- addresses ------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{self.specs['orchestrator'].address}"

    def address(self, name: str) -> str:
        return self.specs[name].address

    @property
    def depth_names(self) -> list[str]:
        return [name for name in self.specs if name.startswith("depth")]

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self, *names: str, timeout_s: float = 120.0) -> None:
        """Start the named processes (default: all, the orchestrator last) and wait until each
        is healthy."""
        order = list(names or self.specs)
        if not names:
            order.sort(key=lambda n: n == "orchestrator")
        backends = [n for n in order if n != "orchestrator"]
        for name in backends:
            self._spawn(name)
        for name in backends:
            self.wait_healthy(name, timeout_s)
        if "orchestrator" in order:
            self._spawn("orchestrator")
            self.wait_healthy("orchestrator", timeout_s)

    def _spawn(self, name: str) -> None:
        if name in self.processes and self.processes[name].alive:
            raise StackError(f"{name} is already running")
        spec = self.specs[name]
        log_path = self.log_dir / f"{name}.log"
        with open(log_path, "ab") as log:
            log.write(f"---- start {' '.join(spec.argv[1:])} at {time.time():.3f}\n".encode())
            log.flush()
            popen = subprocess.Popen(
                spec.argv, env=spec.env, cwd=REPO_ROOT, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True)
        self.processes[name] = Process(spec, popen, log_path)

    def is_healthy(self, name: str) -> bool:
        spec = self.specs[name]
        if spec.kind == "grpc":
            return grpc_health(spec.address) is not None
        if spec.kind == "tcp":
            with contextlib.suppress(OSError), socket.create_connection(
                    (connect_host(spec.host), spec.port), timeout=1.0):
                return True
            return False
        try:
            return httpx.get(f"http://{spec.address}/health", timeout=2.0).status_code == 200
        except httpx.HTTPError:
            return False

    def wait_healthy(self, name: str, timeout_s: float = 120.0) -> None:
        deadline = time.monotonic() + timeout_s
        process = self.processes[name]
        while not self.is_healthy(name):
            if not process.alive:
                raise StackError(f"{name} exited with {process.popen.returncode}:\n"
                                 f"{self.log_tail(name)}")
            if time.monotonic() > deadline:
                raise StackError(f"{name} not healthy within {timeout_s:.0f}s:\n"
                                 f"{self.log_tail(name)}")
            time.sleep(0.2)

    def kill(self, name: str, sig: signal.Signals = signal.SIGKILL, timeout_s: float = 30.0
             ) -> None:
        """Send ``sig`` to the process group and wait for the process to end."""
        process = self.processes[name]
        process.signal_group(sig)
        try:
            process.popen.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.signal_group(signal.SIGKILL)
            process.popen.wait(10)
            raise StackError(f"{name} ignored {sig.name} for {timeout_s:.0f}s") from None
        # Anything the service spawned goes with it.
        process.signal_group(signal.SIGKILL)

    def pause(self, name: str) -> None:
        """SIGSTOP: the process keeps its sockets but answers nothing, as a stalled one would."""
        self.processes[name].signal_group(signal.SIGSTOP)

    def resume(self, name: str) -> None:
        self.processes[name].signal_group(signal.SIGCONT)

    def restart(self, name: str, env: dict[str, str] | None = None, timeout_s: float = 120.0
                ) -> None:
        """Stop (SIGTERM) if running and start again on the same port: with the planned
        environment plus ``env``, so a restart without ``env`` undoes an earlier one's."""
        if name in self.processes and self.processes[name].alive:
            self.kill(name, signal.SIGTERM)
        self.specs[name].env = {**self.planned_env[name], **(env or {})}
        self.start(name, timeout_s=timeout_s)

    def pid(self, name: str) -> int:
        return self.processes[name].popen.pid

    def cpu_seconds(self, name: str) -> float:
        """User + system CPU time the process has used so far (from /proc)."""
        fields = Path(f"/proc/{self.pid(name)}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self, grace_s: float = 10.0) -> None:
        """Everything down: the orchestrator first, then SIGTERM to the rest, SIGKILL late."""
        running = sorted(self.processes.values(), key=lambda p: p.spec.name != "orchestrator")
        for process in running:
            process.signal_group(signal.SIGCONT)  # a paused process cannot act on SIGTERM
            process.signal_group(signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for process in running:
            try:
                process.popen.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            process.signal_group(signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.popen.wait(10)

    # -- logs ------------------------------------------------------------------------------------

    def log(self, name: str) -> str:
        path = self.log_dir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def log_tail(self, name: str, lines: int = 40) -> str:
        return "\n".join(self.log(name).splitlines()[-lines:])

    def logs(self) -> str:
        """Every process's log tail, for a failing test's report."""
        return "\n".join(f"==== {name}\n{self.log_tail(name)}" for name in self.specs)


def stack_specs(tmp_dir: Path, *, depth_replicas: int = 1, extra_env: dict[str, str] | None = None,
                tiny_models_dir: Path | None = None, hosts: dict[str, str] | None = None,
                argv_prefix: dict[str, list[str]] | None = None, profile: str | None = None,
                ) -> tuple[list[ServiceSpec], Path]:
    """The processes of a smoke stack on free ports, with its data directory under ``tmp_dir``.

    ``hosts`` binds services to other addresses than loopback; ``argv_prefix`` runs a process
    under a wrapper (e.g. ``ip netns exec NAME``), by process name; ``profile`` runs a model
    profile, on the tiny models of its architectures.
    """
    ports = free_ports(4 + depth_replicas)
    names = ["orchestrator", "depth", "segment", "imagegen", "openai"]
    options = StackOptions(
        smoke=True,
        data_dir=tmp_dir / "data",
        depth_replicas=depth_replicas,
        ports=dict(zip(names, ports, strict=False)),
        depth_ports=[ports[1], *ports[5:]],
        hosts=dict(hosts or {}),
        tiny_models_dir=tiny_models_dir or TINY_MODELS_DIR,
        extra_env=dict(extra_env or {}),
        profile=profile,
    )
    specs = plan_services(options)
    for spec in specs:
        spec.argv = [*(argv_prefix or {}).get(spec.name, []), *spec.argv]
    return specs, options.data_dir


@contextlib.contextmanager
def running_stack(tmp_dir: Path, *, depth_replicas: int = 1,
                  extra_env: dict[str, str] | None = None, tiny_models_dir: Path | None = None,
                  hosts: dict[str, str] | None = None,
                  argv_prefix: dict[str, list[str]] | None = None,
                  timeout_s: float = 180.0, profile: str | None = None) -> Iterator[Stack]:
    specs, data_dir = stack_specs(tmp_dir, depth_replicas=depth_replicas, extra_env=extra_env,
                                  tiny_models_dir=tiny_models_dir, hosts=hosts,
                                  argv_prefix=argv_prefix, profile=profile)
    stack = Stack(specs, tmp_dir / "logs", data_dir)
    try:
        stack.start(timeout_s=timeout_s)
        yield stack
    finally:
        stack.stop()

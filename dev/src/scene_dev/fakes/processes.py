"""The orchestrator over the fake model services, both as real processes: what the API's
end-to-end tests of the front door (limits, fuzzing) run against, in a second or two and with no
model at all.

    with fake_stack(tmp_path, env={"MAX_IMAGE_PIXELS": "6000"},
                    limits=["imagegen.max_vibe_chars=40"]) as stack:
        httpx.get(stack.url + "/limits")
        stack.restart_fakes(limits=[...])    # the services come back with other limits

The fakes run in one process (``python -m scene_dev.fakes.grpc_services``), the orchestrator in
another (``python -m orchestrator``); each is its own process group, stopped with SIGTERM, then
SIGKILL, so a failing test leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from scene_dev.paths import REPO_ROOT
from scene_dev.run_plan import free_ports


@dataclass
class FakeStack:
    tmp_path: Path
    env: dict[str, str]
    limits: list[str]
    image_size: str
    ports: dict[str, int] = field(default_factory=dict)
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.ports['orchestrator']}"

    @property
    def data_dir(self) -> Path:
        return self.tmp_path / "data"

    def log(self, name: str) -> str:
        path = self.tmp_path / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def _spawn(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        with open(self.tmp_path / f"{name}.log", "ab") as log:
            self.processes[name] = subprocess.Popen(
                argv, cwd=REPO_ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True)

    def _wait(self, name: str, ready, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not ready():
            process = self.processes[name]
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited with {process.returncode}:\n{self.log(name)}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} not ready within {timeout_s:.0f} s:\n{self.log(name)}")
            time.sleep(0.1)

    def start_fakes(self) -> None:
        argv = [sys.executable, "-m", "scene_dev.fakes.grpc_services", "--host", "127.0.0.1",
                "--depth-port", str(self.ports["depth"]),
                "--segment-port", str(self.ports["segment"]),
                "--imagegen-port", str(self.ports["imagegen"]),
                "--image-size", self.image_size,
                *(arg for limit in self.limits for arg in ("--limit", limit))]
        self._spawn("fakes", argv, dict(os.environ))
        log = self.tmp_path / "fakes.log"
        # Serving once it has printed its ports (one JSON line).
        self._wait("fakes", lambda: any(line.startswith("{") for line in
                                        log.read_text(errors="replace").splitlines()[-3:]))

    def start_orchestrator(self) -> None:
        env = {**os.environ, "ORCHESTRATOR_HOST": "127.0.0.1",
               "ORCHESTRATOR_PORT": str(self.ports["orchestrator"]),
               "DEPTH_SERVICE_ADDR": f"127.0.0.1:{self.ports['depth']}",
               "SEGMENT_SERVICE_ADDR": f"127.0.0.1:{self.ports['segment']}",
               "IMAGEGEN_SERVICE_ADDR": f"127.0.0.1:{self.ports['imagegen']}",
               "DATA_DIR": str(self.data_dir), "HEALTH_TIMEOUT_S": "1", "METRICS_ENABLED": "true",
               **self.env}
        self._spawn("orchestrator", [sys.executable, "-m", "orchestrator"], env)

        def healthy() -> bool:
            try:
                return httpx.get(f"{self.url}/health", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False
        self._wait("orchestrator", healthy)

    def stop(self, name: str) -> None:
        process = self.processes.pop(name, None)
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            pass
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(5)

    def restart_fakes(self, limits: list[str] | None = None) -> None:
        """Stop the fake services and start them again on the same ports, advertising
        ``limits`` (the defaults plus these) this time."""
        self.stop("fakes")
        self.limits = list(limits or [])
        self.start_fakes()

    def close(self) -> None:
        self.stop("orchestrator")
        self.stop("fakes")


@contextlib.contextmanager
def fake_stack(tmp_path: Path, *, env: dict[str, str] | None = None,
               limits: list[str] | None = None, image_size: str = "96x64") -> Iterator[FakeStack]:
    """The fakes (advertising their defaults plus ``limits``, e.g. ``depth.max_image_pixels=N``)
    and an orchestrator with ``env`` on top of the addresses, on free ports."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    stack = FakeStack(tmp_path, dict(env or {}), list(limits or []), image_size)
    stack.ports = dict(zip(("orchestrator", "depth", "segment", "imagegen"), free_ports(4),
                           strict=True))
    try:
        stack.start_fakes()
        stack.start_orchestrator()
        yield stack
    finally:
        stack.close()

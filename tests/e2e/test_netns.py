"""Each service in its own network namespace (iproute2), joined by a bridge: nothing may assume
that the services share a host, a loopback interface or ``localhost``.

Needs root and ``ip netns``; skipped with the reason elsewhere.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import httpx
import pytest

from pointcloud import decode
from tests.stack import running_stack

pytestmark = pytest.mark.slow
SERVICES = ("openai", "depth", "segment", "imagegen", "orchestrator")
PROCESS_NAMES = {"openai": "openai-fake"}


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check, timeout=30)


class Network:
    """A bridge in the test's namespace and one namespace per service, each with a veth on the
    bridge: 10.213.N.1 is the test (the host), services get .2, .3, ..."""

    def __init__(self) -> None:
        tag = os.getpid() % 10000
        self.bridge = f"scbr{tag}"
        subnet = f"10.213.{tag % 250}"
        self.gateway = f"{subnet}.1"
        self.namespaces = {name: f"scene{tag}-{name}" for name in SERVICES}
        self.addresses = {name: f"{subnet}.{i + 2}" for i, name in enumerate(SERVICES)}
        self.veths = [f"scv{tag}-{i}" for i in range(len(SERVICES))]

    def create(self) -> None:
        ip("link", "add", self.bridge, "type", "bridge")
        ip("addr", "add", f"{self.gateway}/24", "dev", self.bridge)
        ip("link", "set", self.bridge, "up")
        for veth, name in zip(self.veths, SERVICES, strict=True):
            namespace = self.namespaces[name]
            ip("netns", "add", namespace)
            ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", namespace)
            ip("link", "set", veth, "master", self.bridge, "up")
            ip("-n", namespace, "addr", "add", f"{self.addresses[name]}/24", "dev", "eth0")
            ip("-n", namespace, "link", "set", "eth0", "up")
            ip("-n", namespace, "link", "set", "lo", "up")

    def delete(self) -> None:
        for namespace in self.namespaces.values():
            ip("netns", "del", namespace, check=False)  # takes its end of the veth with it
        for veth in self.veths:
            ip("link", "del", veth, check=False)
        ip("link", "del", self.bridge, check=False)


@pytest.fixture(scope="module")
def network():
    if shutil.which("ip") is None:
        pytest.skip("iproute2 (ip) is not installed")
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    network = Network()
    try:
        network.create()
    except subprocess.CalledProcessError as exc:
        network.delete()
        pytest.skip(f"cannot create network namespaces here: {exc.stderr.strip()}")
    try:
        yield network
    finally:
        network.delete()


@pytest.fixture(scope="module")
def stack(network, tmp_path_factory, tiny_models_dir):
    prefixes = {PROCESS_NAMES.get(name, name): ["ip", "netns", "exec", namespace]
                for name, namespace in network.namespaces.items()}
    with running_stack(tmp_path_factory.mktemp("e2e-netns"), tiny_models_dir=tiny_models_dir,
                       hosts=network.addresses, argv_prefix=prefixes) as stack:
        yield stack


def test_services_are_isolated_from_each_other(network, stack):
    """From the orchestrator's namespace, depth is not on loopback, only at its own address."""
    depth_port = stack.specs["depth"].port
    probe = [sys.executable, "-m", "scene_rpc.health_probe", "--timeout", "2", "--quiet"]
    in_orchestrator = ["ip", "netns", "exec", network.namespaces["orchestrator"]]
    local = subprocess.run([*in_orchestrator, *probe, f"127.0.0.1:{depth_port}"], timeout=30)
    remote = subprocess.run([*in_orchestrator, *probe,
                             f"{network.addresses['depth']}:{depth_port}"], timeout=30)
    assert (local.returncode, remote.returncode) == (1, 0)


def test_the_whole_pipeline_runs_across_namespaces(stack):
    with httpx.Client(base_url=stack.url, timeout=120) as client:
        health = client.get("/health").json()
        assert health["status"] == "ok", health
        response = client.post(
            "/generate", json={"prompt": "a lighthouse [fake:size=512x288]", "mode": "standard"},
            headers={"Authorization": "Bearer sk-netns-test-key"})
        assert response.status_code == 200, response.text
        assert decode(response.content).count > 0
        generation_id = response.headers["X-Generation-Id"]
        assert client.get(f"/generations/{generation_id}").json()["status"] == "completed"

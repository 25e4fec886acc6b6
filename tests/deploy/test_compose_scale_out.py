"""deploy/docker/compose.scale-out.yml over docker-compose.yml: two orchestrators over one
PostgreSQL behind a proxy, as ``docker-compose config`` (or ``docker compose config``) renders
the pair; no Docker engine runs here."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
OVERRIDE = REPO / "deploy" / "docker" / "compose.scale-out.yml"
NGINX = REPO / "deploy" / "docker" / "scale-out" / "nginx.conf"
REPLICAS = ("orchestrator-a", "orchestrator-b")


def volume(entry: str | dict) -> tuple[str, str, bool]:
    """(source, target, read only) of a volume as either compose renders it (1.29: the short
    string; v2: the long mapping)."""
    if isinstance(entry, dict):
        return entry["source"], entry["target"], bool(entry.get("read_only"))
    source, target, *mode = entry.split(":")
    return source, target, "ro" in mode


def _compose() -> list[str] | None:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if shutil.which("docker") and subprocess.run(
            ["docker", "compose", "version"], capture_output=True, check=False).returncode == 0:
        return ["docker", "compose"]
    return None


@pytest.fixture(scope="module")
def rendered() -> dict:
    compose = _compose()
    if compose is None:
        pytest.skip("neither docker-compose nor the docker compose plugin is installed")
    result = subprocess.run(
        [*compose, "-f", "docker-compose.yml", "-f", str(OVERRIDE.relative_to(REPO)),
         "--profile", "scale-out", "config"],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
        env={"PATH": "/usr/local/bin:/usr/bin:/bin", "POSTGRES_PASSWORD": "s3cret"})
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def test_two_orchestrators_a_proxy_and_postgres_in_the_profile(rendered):
    services = rendered["services"]
    for name in (*REPLICAS, "proxy", "postgres"):
        assert services[name]["profiles"] == ["scale-out"], name
    # The single orchestrator of docker-compose.yml stays out of the scale-out profile.
    assert services["orchestrator"]["profiles"] == ["single"]


def test_the_replicas_share_the_database_and_the_generations_volume(rendered):
    services = rendered["services"]
    for name in REPLICAS:
        spec = services[name]
        env = spec["environment"]
        assert env["DATABASE_URL"] == "postgresql://scene:s3cret@postgres:5432/scene"
        assert env["DATA_DIR"] == "/data"
        assert ("generations", "/data", False) in [volume(v) for v in spec["volumes"]]
        assert spec["depends_on"]["postgres"]["condition"] == "service_healthy"
        # Only the proxy publishes a port: two replicas cannot both take the host's.
        assert not spec.get("ports")
    postgres = services["postgres"]
    assert postgres["environment"]["POSTGRES_PASSWORD"] == "s3cret"
    assert postgres["environment"]["POSTGRES_DB"] == "scene"
    assert "pg_isready" in postgres["healthcheck"]["test"]


def test_the_proxy_publishes_the_api_and_balances_both_replicas(rendered):
    proxy = rendered["services"]["proxy"]
    (port,) = proxy["ports"]
    assert str(port["target"]) == "8000" and str(port["published"]) == "8000"
    (config,) = proxy["volumes"]
    source, _, read_only = volume(config)
    assert Path(source) == NGINX and read_only
    text = NGINX.read_text()
    upstream = re.search(r"upstream orchestrators \{(.*?)\}", text, re.S).group(1)
    assert sorted(re.findall(r"server (\S+):8000", upstream)) == sorted(REPLICAS)
    # Server-Sent Events pass unbuffered; uploads up to the orchestrator's 25 MiB pass.
    assert "proxy_buffering off;" in text
    assert int(re.search(r"client_max_body_size (\d+)m;", text).group(1)) >= 26

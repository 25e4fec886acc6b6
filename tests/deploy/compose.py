"""docker-compose.yml rendered by Docker Compose itself (``docker compose config``, or Debian's
``docker-compose config`` 1.29): each service's environment exactly as a container would get it,
for a given caller environment.

Where neither is installed the tests that render skip and say why (``scripts/ensure_docker.sh
compose`` installs Debian's docker-compose; ``make test`` runs it).
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]


@functools.cache
def _command() -> tuple[str, ...] | None:
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True,
                                 timeout=60).returncode == 0:
        return (docker, "compose")
    legacy = shutil.which("docker-compose")
    return (legacy,) if legacy else None


def render(files: list[Path], environ: Mapping[str, str]) -> dict[str, Any]:
    """``config`` of the compose files under exactly ``environ`` (plus PATH and HOME, which
    Compose needs to run; neither is a variable the files use)."""
    command = _command()
    if command is None:
        pytest.skip("neither `docker compose` nor docker-compose is installed "
                    "(scripts/ensure_docker.sh compose)")
    env = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/root"),
           **environ}
    args = [*command, "--project-directory", str(REPO)]
    for path in files:
        args += ["-f", str(path)]
    result = subprocess.run([*args, "config"], capture_output=True, text=True, timeout=120,
                            env=env, cwd=REPO)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} config failed:\n{result.stderr}")
    return yaml.safe_load(result.stdout)


def container_environment(rendered: dict[str, Any], service: str) -> dict[str, str]:
    """The variables compose sets in the service's container. A variable listed without a value
    (``VAR:``) that the caller did not set is rendered as null by docker-compose 1.29 and left
    out by Compose v2: either way the container does not get it."""
    environment = rendered["services"][service].get("environment") or {}
    if isinstance(environment, list):  # the list form, "KEY=value"
        environment = dict(item.split("=", 1) if "=" in item else (item, None)
                           for item in environment)
    return {key: str(value) for key, value in environment.items() if value is not None}

"""The kustomizations under deploy/k8s rendered by ``kubectl kustomize``: exactly what
``kubectl apply -k`` would send, parsed from its multi-document YAML.

Where kubectl is missing, or its built-in kustomize predates what the manifests use (``labels``,
``patches`` with a target; Debian's ``kubernetes-client`` package is kubectl 1.20 with kustomize
v2), the tests that render skip and say why. The project's machines and CI have a current kubectl.
"""

from __future__ import annotations

import copy
import functools
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

# The oldest kustomize these tests were checked with; older ones lack or change what the
# manifests use (labels without selectors, JSON 6902 patches by target).
MIN_KUSTOMIZE = (5, 0)

Manifest = dict[str, Any]


@functools.cache
def _kubectl() -> tuple[str | None, str]:
    """(kubectl's path, "") where it can render the manifests; else (None, why not)."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        return None, "kubectl is not installed: the kustomizations cannot be rendered"
    result = subprocess.run([kubectl, "version", "--client", "-o", "json"], capture_output=True,
                            text=True, timeout=60, check=True)
    found = json.loads(result.stdout).get("kustomizeVersion", "")
    match = re.match(r"v?(\d+)\.(\d+)", found)
    if match is None or tuple(map(int, match.groups())) < MIN_KUSTOMIZE:
        minimum = ".".join(map(str, MIN_KUSTOMIZE))
        return None, (f"kubectl's kustomize is {found or 'unknown'}; the manifests need "
                      f"v{minimum} or newer")
    return kubectl, ""


@functools.cache
def _rendered(directory: Path) -> tuple[Manifest, ...]:
    kubectl, why = _kubectl()
    if kubectl is None:
        pytest.skip(why)
    result = subprocess.run([kubectl, "kustomize", str(directory)], capture_output=True,
                            text=True, timeout=60)
    if result.returncode != 0:
        raise RuntimeError(f"kubectl kustomize {directory} failed:\n{result.stderr}")
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def render(directory: Path) -> list[Manifest]:
    """The manifests ``kubectl kustomize directory`` renders (a fresh copy each call: tests may
    change what they get); skips the calling test where kubectl cannot render them."""
    return copy.deepcopy(list(_rendered(directory.resolve())))

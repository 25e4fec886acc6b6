"""Rendering of the project's kustomizations without the kustomize binary.

Implements the subset ``deploy/k8s`` uses: ``resources`` (files and directories with their own
kustomization), ``namespace``, ``labels`` (metadata only), ``images`` (newName/newTag) and JSON
6902 ``patches`` with a kind/name target. Anything else fails loudly rather than being ignored,
so a manifest change that needs the real tool shows up here first. Where ``kubectl`` is
installed, the tests also compare this rendering with ``kubectl kustomize``.
"""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

SUPPORTED_KEYS = {"apiVersion", "kind", "resources", "namespace", "labels", "images", "patches"}
# Kinds that live outside any namespace (the namespace transformer leaves them alone).
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "PersistentVolume",
                  "StorageClass", "CustomResourceDefinition"}

Manifest = dict[str, Any]


def render(directory: Path) -> list[Manifest]:
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unknown = set(kustomization) - SUPPORTED_KEYS
    if unknown:
        raise NotImplementedError(f"{directory}: kustomization keys {sorted(unknown)}")
    manifests: list[Manifest] = []
    for entry in kustomization.get("resources", []):
        path = directory / entry
        if path.is_dir():
            manifests += render(path)
        else:
            manifests += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    for patch in kustomization.get("patches", []):
        _apply_patch(manifests, patch)
    for label in kustomization.get("labels", []):
        if label.get("includeSelectors") or label.get("includeTemplates"):
            raise NotImplementedError("labels with includeSelectors/includeTemplates")
        for manifest in manifests:
            manifest.setdefault("metadata", {}).setdefault("labels", {}).update(label["pairs"])
    if "namespace" in kustomization:
        for manifest in manifests:
            if manifest["kind"] not in CLUSTER_SCOPED:
                manifest["metadata"]["namespace"] = kustomization["namespace"]
    for image in kustomization.get("images", []):
        for container in _containers(manifests):
            name, _, _ = container["image"].partition(":")
            if name == image["name"]:
                new_name = image.get("newName", name)
                tag = image.get("newTag")
                container["image"] = f"{new_name}:{tag}" if tag else new_name
    return manifests


def _containers(manifests: list[Manifest]):
    for manifest in manifests:
        pod = manifest.get("spec", {}).get("template", {}).get("spec", {})
        yield from pod.get("containers", [])


def _apply_patch(manifests: list[Manifest], patch: dict) -> None:
    target = patch["target"]
    operations = yaml.safe_load(patch["patch"])
    if not isinstance(operations, list):
        raise NotImplementedError("only JSON 6902 patches (a list of operations)")
    matched = [m for m in manifests
               if m["kind"] == target.get("kind", m["kind"])
               and re.fullmatch(target.get("name", ".*"), m["metadata"]["name"])]
    if not matched:
        raise ValueError(f"patch target {target} matches nothing")
    for manifest in matched:
        for op in operations:
            _apply_operation(manifest, op)


def _apply_operation(document: Manifest, op: dict) -> None:
    *parents, last = [part.replace("~1", "/").replace("~0", "~")
                      for part in op["path"].lstrip("/").split("/")]
    node: Any = document
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    key: Any = int(last) if isinstance(node, list) else last
    if op["op"] == "remove":
        del node[key]
    elif op["op"] in ("replace", "add"):
        if op["op"] == "replace" and (key not in node if isinstance(node, dict) else False):
            raise KeyError(f"replace of missing {op['path']}")
        node[key] = copy.deepcopy(op["value"])
    else:
        raise NotImplementedError(f"patch operation {op['op']}")


def render_with_kubectl(directory: Path) -> list[Manifest] | None:
    """``kubectl kustomize`` output, or None where kubectl is not installed."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        return None
    result = subprocess.run([kubectl, "kustomize", str(directory)], capture_output=True,
                            text=True, timeout=60, check=True)
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]

"""The four Dockerfiles, parsed and checked without a Docker engine: multi-stage, non-root, a
health check, only real public base images, and every file they copy present in the tree."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCKERFILES = {
    "depth": REPO / "depth-service" / "Dockerfile",
    "segment": REPO / "segment-service" / "Dockerfile",
    "imagegen": REPO / "imagegen-service" / "Dockerfile",
    "orchestrator": REPO / "orchestrator" / "Dockerfile",
}
PORTS = {"depth": 50051, "segment": 50052, "imagegen": 50053, "orchestrator": 8000}
MODEL_SERVICES = ("depth", "segment")
# Every external base image, each a published tag (checked on its registry when it was chosen).
# A new base goes here only once it is known to exist: a made-up tag fails every build.
# Every stage starts from the one PYTHON_IMAGE argument (a local base where no registry is
# reachable, see deploy/docker/make_local_base.sh), defaulting to this.
PUBLISHED_IMAGES = {
    "python:3.11-slim-bookworm",
}


@dataclass
class Stage:
    base: str
    name: str | None
    env: dict[str, str] = field(default_factory=dict)
    exposed: set[int] = field(default_factory=set)
    user: str = "root"
    healthcheck: str = ""
    cmd: str = ""
    copies: list[list[str]] = field(default_factory=list)
    runs: list[str] = field(default_factory=list)


@dataclass
class Dockerfile:
    global_args: dict[str, str]
    stages: list[Stage]

    @property
    def final(self) -> Stage:
        return self.stages[-1]

    @property
    def env(self) -> dict[str, str]:
        return self.final.env

    @property
    def exposed(self) -> set[int]:
        return self.final.exposed

    def stage(self, name: str) -> Stage | None:
        return next((s for s in self.stages if s.name == name), None)


def _instructions(text: str):
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    logical = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not logical and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if stripped.endswith("\\"):
            logical += stripped[:-1] + " "
            continue
        logical += stripped
        keyword, _, rest = logical.partition(" ")
        yield keyword.upper(), rest.strip()
        logical = ""


def _substitute(text: str, values: dict[str, str]) -> str:
    return re.sub(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?", lambda m: values.get(m.group(1), ""),
                  text)


def parse_dockerfile(path: Path) -> Dockerfile:
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    stage_args: dict[str, str] = {}
    for keyword, rest in _instructions(path.read_text()):
        if keyword == "ARG":
            name, _, default = rest.partition("=")
            if not stages:
                global_args[name] = default
            else:
                stage_args[name] = default or global_args.get(name, "")
        elif keyword == "FROM":
            words = rest.split()
            words = [w for w in words if not w.startswith("--platform")]
            base = _substitute(words[0], global_args)
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            parent = next((s for s in stages if s.name == base), None)
            stage = Stage(base=base, name=name)
            if parent is not None:
                stage.env = dict(parent.env)
                stage.exposed = set(parent.exposed)
                stage.user = parent.user
            stages.append(stage)
            stage_args = {}
        elif keyword == "ENV":
            values = {**global_args, **stage_args, **stages[-1].env}
            for pair in shlex.split(rest):
                key, _, value = pair.partition("=")
                stages[-1].env[key] = _substitute(value, values)
        elif keyword == "EXPOSE":
            stages[-1].exposed |= {int(p.split("/")[0]) for p in rest.split()}
        elif keyword == "USER":
            stages[-1].user = rest
        elif keyword == "HEALTHCHECK":
            stages[-1].healthcheck = rest
        elif keyword == "CMD":
            stages[-1].cmd = rest
        elif keyword == "COPY":
            stages[-1].copies.append(rest.split())
        elif keyword == "RUN":
            stages[-1].runs.append(rest)
    return Dockerfile(global_args, stages)


@pytest.fixture(scope="module", params=list(DOCKERFILES))
def service(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def dockerfile(service) -> Dockerfile:
    return parse_dockerfile(DOCKERFILES[service])


def test_bases_are_earlier_stages_or_published_images(dockerfile):
    names = set()
    for stage in dockerfile.stages:
        if stage.base not in names:
            assert stage.base in PUBLISHED_IMAGES, f"unknown base image {stage.base}"
        if stage.name:
            names.add(stage.name)


def test_multi_stage_with_the_build_inputs_left_behind(dockerfile):
    build_stages = [s for s in dockerfile.stages if s.runs and "install" in " ".join(s.runs)]
    assert len(dockerfile.stages) >= 2 and build_stages
    # The final stage copies the finished environment from the build, never the source tree.
    final_copies = [c for c in dockerfile.final.copies if not c[0].startswith("--from=")]
    assert all(c[0].startswith("deploy/docker/") for c in final_copies), final_copies


def test_the_service_runs_as_an_unprivileged_user(dockerfile):
    assert dockerfile.final.user not in ("", "root", "0")


def test_the_health_check_probes_the_served_port(dockerfile, service):
    port = PORTS[service]
    assert dockerfile.exposed == {port}
    check = dockerfile.final.healthcheck
    if service == "orchestrator":
        assert "/health" in check and "ORCHESTRATOR_PORT" in check
        assert dockerfile.env["ORCHESTRATOR_PORT"] == str(port)
    else:
        assert "scene_rpc.health_probe" in check
        port_variable = re.search(r"\$\{(\w+_PORT)\}", check).group(1)
        assert dockerfile.env[port_variable] == str(port)


def test_the_command_starts_the_service_module(dockerfile, service):
    module = "orchestrator" if service == "orchestrator" else f"{service}_service"
    assert dockerfile.final.cmd == f'["python", "-m", "{module}"]'


def test_every_copied_path_exists_and_is_not_dockerignored(dockerfile):
    ignored = [line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")]
    for stage in dockerfile.stages:
        for args in stage.copies:
            if any(a.startswith("--from=") for a in args):
                continue
            *sources, _ = [a for a in args if not a.startswith("--")]
            for source in sources:
                assert (REPO / source).exists(), source
                top = source.split("/")[0]
                assert top not in ignored and source not in ignored, source


def test_the_services_own_package_is_installed_with_the_pinned_constraints(dockerfile,
                                                                            service):
    package = "orchestrator" if service == "orchestrator" else f"{service}-service"
    installs = [r for s in dockerfile.stages for r in s.runs if "install" in r]
    assert any(f"./{package}" in r and "-c scripts/requirements/constraints.txt" in r
               for r in installs)
    for other in {"depth-service", "segment-service", "imagegen-service", "orchestrator"} - {
            package}:
        assert not any(f"./{other}" in r for r in installs), f"{service} installs {other}"


def test_model_services_build_for_cuda_or_cpu_and_can_preload_weights(service):
    text = DOCKERFILES[service].read_text()
    dockerfile = parse_dockerfile(DOCKERFILES[service])
    if service not in MODEL_SERVICES:
        assert not any("torch" in r for s in dockerfile.stages for r in s.runs)
        assert "PRELOAD_MODELS" not in dockerfile.global_args
        return
    assert dockerfile.global_args["TORCH_VARIANT"] == "cuda"
    # No CUDA base: PyPI's torch bundles the CUDA runtime; the host's NVIDIA Container Toolkit
    # brings the driver, told which capabilities as the nvidia/cuda images tell it.
    cuda, cpu = dockerfile.stage("runtime-cuda"), dockerfile.stage("runtime-cpu")
    assert cuda.base == cpu.base == dockerfile.stage("build").base
    assert cuda.env["NVIDIA_DRIVER_CAPABILITIES"] == "compute,utility"
    assert "download.pytorch.org/whl/cpu" in text
    # A local wheel folder can stand in for the index (a machine without PyTorch's index).
    assert ["deploy/docker/wheels", "deploy/docker/wheels"] in dockerfile.stage("build").copies
    # Lazy by default; the preload script exists and names this service.
    assert re.search(r"^ARG PRELOAD_MODELS=0$", text, re.M)
    assert f"preload_models.py {service}" in text
    # torchvision breaks transformers here: the build fails if anything pulls it in.
    assert 'import torchvision" 2>/dev/null' in text


def test_every_stage_starts_from_the_one_python_base_argument(service):
    """One distribution Python 3.11 for build and runtime (the venv's interpreter path must
    exist in both), swappable for a local base with --build-arg PYTHON_IMAGE=..."""
    text = DOCKERFILES[service].read_text()
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11-slim-bookworm$", text, re.M)
    for line in re.findall(r"^FROM .*$", text, re.M):
        assert line.startswith(("FROM ${PYTHON_IMAGE} ", "FROM runtime-")), line


def test_the_classic_builder_can_build_it(service):
    """No BuildKit-only syntax: the classic builder (DOCKER_BUILDKIT=0, Debian's docker.io
    without buildx) rejects RUN --mount and ignores a syntax line."""
    text = DOCKERFILES[service].read_text()
    assert "--mount=" not in text and "# syntax=" not in text
    assert "PIP_NO_CACHE_DIR=1" in text, "no cache mount, so keep pip's cache out of the layers"


def test_the_model_images_share_their_build_layers_up_to_torch():
    """depth and segment are built from the same instructions up to the torch install, so the
    second build reuses the first's layers (torch is most of each image)."""
    def prefix(path: Path) -> list[str]:
        lines = path.read_text().split("\nCOPY protos protos\n")[0]
        return [line for line in lines.splitlines() if line and not line.startswith("#")]

    depth, segment = (prefix(DOCKERFILES[s]) for s in MODEL_SERVICES)
    assert depth == segment and any("pip install" in line for line in depth)


def test_settings_baked_into_images_are_the_services_defaults(dockerfile, service):
    """An image must not quietly change a default: only where to listen, where the data lives
    and, for the orchestrator, the container names of its backends differ."""
    from tests.deploy import settings_env

    names = settings_env.env_names(service)
    container_specific = {"HOST", "DATA_DIR", "SERVICE_ADDR"}
    for variable, value in dockerfile.env.items():
        if variable not in names or any(variable.endswith(s) for s in container_specific):
            continue
        expected = settings_env.default_of(service, names[variable])
        assert settings_env.parse_as(service, variable, value) == expected, variable


def test_the_environment_is_copied_last(service):
    """Every instruction is a layer; without copy-on-write (the vfs storage driver, where
    overlay mounts are unavailable) each one after the venv is a full copy of it, GBs for the
    model images. So the venv comes last, followed at most by the optional weight preload."""
    text = DOCKERFILES[service].read_text()
    after = text.split("COPY --from=build /opt/venv /opt/venv\n")[-1]
    instructions = [keyword for keyword, _ in _instructions(after)]
    assert instructions in ([], ["RUN"]), instructions

"""PROFILE holds in every way to run the stack: each model service's settings, built from exactly
the environment its process would see, pick the profile's models, tiling and threads.

The ways: ``make run`` (its plan of processes), Docker Compose (each image's ENV under the
service environment that ``docker compose config`` renders) and Kubernetes (each image's ENV
under the ConfigMap and env of each kustomize overlay, as ``kubectl kustomize`` renders it).
An image or a deployment file that spelled out a model id, or a default of a setting a profile
tunes, would count as the user's explicit choice and quietly beat the profile: this is the test
that notices.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from scene_rpc.profiles import PROFILES, get_profile
from tests.deploy import compose, settings_env
from tests.deploy.kustomize import render as kustomize
from tests.deploy.test_dockerfiles import parse_dockerfile

REPO = Path(__file__).resolve().parents[2]
MODEL_SERVICES = ("depth", "segment")
DOCKERFILES = {service: REPO / f"{service}-service" / "Dockerfile" for service in MODEL_SERVICES}
# Each profile's overlay; quality is the base's (GPU nodes) and the CPU variant's.
K8S = REPO / "deploy" / "k8s"
OVERLAYS = {"quality": [K8S, K8S / "cpu"], **{name: [K8S / name] for name in PROFILES
                                               if name != "quality"}}


def model_fields(service: str, profile_name: str) -> dict[str, Any]:
    profile = get_profile(profile_name)
    if service == "depth":
        return {"model": profile.depth_model, "fallback_model": profile.depth_fallback_model}
    return {"sam_model": profile.sam_model, "semantic_model": profile.semantic_model}


def tuned_fields(service: str) -> set[str]:
    """Every setting any profile tunes for the service (tiling, prompt density, input cap), and
    its threads."""
    fields = {"threads"}
    for profile in PROFILES.values():
        fields |= set(profile.depth_defaults if service == "depth" else profile.segment_defaults)
    return fields


def expected(service: str, profile_name: str, threads: int | None = None) -> dict[str, Any]:
    """What the service must run with under the profile: its models, and for every tuned setting
    the profile's value or else the service's own default."""
    profile = get_profile(profile_name)
    tuned = profile.depth_defaults if service == "depth" else profile.segment_defaults
    values = {name: tuned.get(name, settings_env.default_of(service, name))
              for name in tuned_fields(service)}
    if threads is not None:
        values["threads"] = threads
    return {**model_fields(service, profile_name), **values, "profile": profile_name}


def resolved(service: str, environ: dict[str, str], monkeypatch) -> dict[str, Any]:
    """The service's settings built from exactly ``environ`` (nothing else in the process's
    environment), as the fields :func:`expected` names."""
    with monkeypatch.context() as scope:
        for name in list(os.environ):
            scope.delenv(name)
        for name, value in environ.items():
            scope.setenv(name, value)
        settings = settings_env.settings_class(service)()
    fields = {*model_fields(service, "quality"), *tuned_fields(service), "profile"}
    return {name: _plain(getattr(settings, name)) for name in fields}


def _plain(value: Any) -> Any:
    return getattr(value, "value", value)


def image_env(service: str) -> dict[str, str]:
    return dict(parse_dockerfile(DOCKERFILES[service]).env)


def caller(profile_name: str) -> dict[str, str]:
    """The user's environment: PROFILE=name, or nothing at all for the default profile."""
    return {} if profile_name == "quality" else {"PROFILE": profile_name}


# ---- make run ------------------------------------------------------------------------------

@pytest.mark.parametrize("profile", list(PROFILES))
def test_make_run(profile, monkeypatch):
    from scene_dev import run_plan as run

    specs = {s.name: s for s in run.plan_services(run.StackOptions(), environ=caller(profile))}
    # make run splits this machine's cores between the model processes, by profile.
    threads = run.model_threads(caller(profile), depth_processes=1)
    for service in MODEL_SERVICES:
        (count,) = threads[service].values()
        want = expected(service, profile, threads=count)
        assert resolved(service, specs[service].env, monkeypatch) == want, service


# ---- images and Docker Compose ---------------------------------------------------------------

@pytest.mark.parametrize("service", MODEL_SERVICES)
def test_images_carry_no_model_or_tuning_a_profile_sets(service):
    names = settings_env.env_names(service)
    profile_fields = {*model_fields(service, "quality"), *tuned_fields(service), "profile"}
    baked = {names[v] for v in image_env(service) if v in names}
    assert not baked & profile_fields, sorted(baked & profile_fields)


@pytest.mark.parametrize("profile", list(PROFILES))
def test_docker_compose(profile, monkeypatch):
    rendered = compose.render([REPO / "docker-compose.yml"], caller(profile))
    for service in MODEL_SERVICES:
        env = {**image_env(service), **compose.container_environment(rendered, service)}
        assert resolved(service, env, monkeypatch) == expected(service, profile), service


def test_docker_compose_passes_what_the_user_set(monkeypatch):
    """A model or tuning set by the user reaches the container and beats the profile."""
    rendered = compose.render([REPO / "docker-compose.yml"],
                              {"PROFILE": "fast", "DEPTH_TILE_MODE": "forced",
                               "SEG_MODEL": "/models/mine", "DEPTH_FALLBACK_MODEL": ""})
    depth = {**image_env("depth"), **compose.container_environment(rendered, "depth")}
    segment = {**image_env("segment"), **compose.container_environment(rendered, "segment")}
    got_depth, got_segment = resolved("depth", depth, monkeypatch), resolved(
        "segment", segment, monkeypatch)
    assert got_depth["tile_mode"] == "forced" and got_depth["fallback_model"] == ""
    assert got_depth["model"] == get_profile("fast").depth_model
    assert got_segment["semantic_model"] == "/models/mine"
    assert got_segment["sam_model"] == get_profile("fast").sam_model


def test_the_smoke_stack_runs_the_fast_profile_on_its_tiny_models(monkeypatch):
    """scripts/container_smoke.sh runs PROFILE=fast: the fast profile's tuning with the tiny
    models of the fast architectures in place of the hub ids."""
    rendered = compose.render([REPO / "docker-compose.yml",
                               REPO / "deploy" / "docker" / "compose.smoke.yml"],
                              {"PROFILE": "fast"})
    from scene_dev import run_plan as run

    tiny = run.profile_smoke_env(Path("/models"), "fast")
    for service in MODEL_SERVICES:
        env = {**image_env(service), **compose.container_environment(rendered, service)}
        settings = resolved(service, env, monkeypatch)
        want = expected(service, "fast")
        # The smoke stack's own lighter prompt grid (run.SMOKE_DEFAULTS) aside.
        for name in ("points_per_side", "crop_points_per_side"):
            want.pop(name, None)
            settings.pop(name, None)
        want.update({"model": tiny["DEPTH_MODEL"], "fallback_model": ""} if service == "depth"
                    else {"sam_model": tiny["SAM_MODEL"], "semantic_model": tiny["SEG_MODEL"]})
        assert settings == want, service


# ---- Kubernetes ----------------------------------------------------------------------------

def test_every_profile_has_an_overlay():
    for paths in OVERLAYS.values():
        for path in paths:
            assert (path / "kustomization.yaml").is_file(), path


@pytest.mark.parametrize("profile,overlay",
                         [(p, path) for p, paths in OVERLAYS.items() for path in paths],
                         ids=lambda v: v if isinstance(v, str) else v.relative_to(REPO).as_posix())
def test_kustomize_overlay(profile, overlay, monkeypatch):
    objects = {(m["kind"], m["metadata"]["name"]): m for m in kustomize(overlay)}
    for service in MODEL_SERVICES:
        (container,) = objects["Deployment", service]["spec"]["template"]["spec"]["containers"]
        env = image_env(service)
        for source in container.get("envFrom", []):
            env.update(objects["ConfigMap", source["configMapRef"]["name"]]["data"])
        env.update({item["name"]: str(item["value"]) for item in container.get("env", [])})
        assert resolved(service, env, monkeypatch) == expected(service, profile), service


def test_the_container_smoke_checks_the_fast_architectures_in_health():
    """scripts/container_smoke.sh reads back from /health the models the fast profile's smoke
    stack must load: the tiny twins of the fast profile's models, by role."""
    import re

    from scene_dev import run_plan as run

    text = (REPO / "scripts" / "container_smoke.sh").read_text()
    assert re.search(r"^export PROFILE=fast$", text, re.M)
    pairs = re.search(r"^FAST_MODELS=(\S+)$", text, re.M).group(1)
    fast = get_profile("fast")
    twins = {role: Path(run.tiny_twin(Path("/models"), model)).name for role, model in
             {"depth": fast.depth_model, "sam": fast.sam_model,
              "semantic": fast.semantic_model}.items()}
    assert dict(pair.split("=") for pair in pairs.split(",")) == twins
    assert '--models "$FAST_MODELS"' in text

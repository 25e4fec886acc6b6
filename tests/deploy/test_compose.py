"""docker-compose.yml and its GPU override, checked structurally (no Docker engine runs here)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from tests.deploy import settings_env
from tests.deploy.test_dockerfiles import parse_dockerfile

REPO = Path(__file__).resolve().parents[2]
GRPC_PORTS = {"depth": 50051, "segment": 50052, "imagegen": 50053}
SERVICES = [*GRPC_PORTS, "orchestrator"]
# Values a container must have whatever the caller's environment says: where it listens and,
# for the orchestrator, where its data lives.
FIXED = {
    "depth": {"DEPTH_HOST": "0.0.0.0", "DEPTH_PORT": "50051"},
    "segment": {"SEG_HOST": "0.0.0.0", "SEG_PORT": "50052"},
    "imagegen": {"IMAGEGEN_HOST": "0.0.0.0", "IMAGEGEN_PORT": "50053"},
    "orchestrator": {"ORCHESTRATOR_HOST": "0.0.0.0", "ORCHESTRATOR_PORT": "8000",
                     "DATA_DIR": "/data"},
}
# Not settings of ours, passed through to huggingface_hub in the model services.
HUB_VARIABLES = {"HF_TOKEN", "HF_HUB_OFFLINE"}
INTERPOLATION = re.compile(r"^\$\{(?P<name>[A-Z0-9_]+)(?::-(?P<default>[^}]*))?\}$")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def gpu_override() -> dict:
    return yaml.safe_load((REPO / "deploy" / "docker" / "compose.gpu.yml").read_text())


def test_the_four_services_and_nothing_else(compose):
    assert sorted(compose["services"]) == sorted(SERVICES)


@pytest.mark.parametrize("service", SERVICES)
def test_every_service_builds_its_own_dockerfile_from_the_repository_root(compose, service):
    spec = compose["services"][service]
    # Built here, never pulled: an image: line would name something no registry has.
    assert "image" not in spec
    assert spec["build"]["context"] == "."
    dockerfile = REPO / spec["build"]["dockerfile"]
    assert dockerfile.is_file()
    assert dockerfile.parent.name.startswith(service)


@pytest.mark.parametrize("service", list(GRPC_PORTS))
def test_grpc_services_are_health_checked_on_their_port_with_the_standard_probe(compose,
                                                                                 service):
    spec = compose["services"][service]
    port = GRPC_PORTS[service]
    # Readiness (no --liveness): a preloading or failed backend is not healthy, and the start
    # period leaves room for a preload's first download.
    assert spec["healthcheck"]["test"] == [
        "CMD", "python", "-m", "scene_rpc.health_probe", "--quiet", f"127.0.0.1:{port}"]
    if service != "imagegen":  # it loads nothing
        start_period = spec["healthcheck"]["start_period"]
        assert start_period.endswith("s") and int(start_period[:-1]) >= 300
    assert spec["expose"] == [str(port)]
    assert "ports" not in spec, "model services are reached through the orchestrator only"
    exposed = parse_dockerfile(REPO / spec["build"]["dockerfile"]).exposed
    assert exposed == {port}


def test_the_orchestrator_is_published_health_checked_and_keeps_its_data_on_a_volume(compose):
    spec = compose["services"]["orchestrator"]
    assert spec["ports"] == ["${ORCHESTRATOR_PUBLISH:-8000}:8000"]
    assert "http://127.0.0.1:8000/health" in " ".join(spec["healthcheck"]["test"])
    mounts = dict(volume.split(":", 1)[::-1] for volume in spec["volumes"])
    data_dir = spec["environment"]["DATA_DIR"]
    assert mounts[data_dir] in compose["volumes"]
    assert set(spec["depends_on"]) == set(GRPC_PORTS)
    assert all(v["condition"] == "service_healthy" for v in spec["depends_on"].values())


def test_the_orchestrator_reaches_every_replica_by_the_services_dns_names(compose):
    env = compose["services"]["orchestrator"]["environment"]
    for service, port in GRPC_PORTS.items():
        value = env[f"{service.upper()}_SERVICE_ADDR"]
        assert INTERPOLATION.match(value).group("default") == f"dns:///{service}:{port}"


def test_the_model_services_share_one_hugging_face_cache_volume(compose):
    caches = set()
    for service in ("depth", "segment"):
        spec = compose["services"][service]
        hf_home = parse_dockerfile(REPO / spec["build"]["dockerfile"]).env["HF_HOME"]
        mounts = dict(volume.split(":", 1)[::-1] for volume in spec["volumes"])
        caches.add(mounts[hf_home])
    assert len(caches) == 1
    assert caches <= set(compose["volumes"])


@pytest.mark.parametrize("service", SERVICES)
def test_every_setting_can_be_set_from_the_environment(compose, service):
    env = compose["services"][service]["environment"]
    expected = set(settings_env.env_names(service))
    missing = expected - set(env)
    unknown = set(env) - expected - HUB_VARIABLES
    assert not missing, f"{service}: settings not passed through: {sorted(missing)}"
    assert not unknown, f"{service}: variables no setting reads: {sorted(unknown)}"


@pytest.mark.parametrize("service", SERVICES)
def test_spelled_out_defaults_are_the_services_own(compose, service):
    """``${VAR:-default}`` must mean what the service means when VAR is unset; a bare ``VAR:``
    passes the caller's value through and otherwise leaves the service's default."""
    env = compose["services"][service]["environment"]
    names = settings_env.env_names(service)
    for variable, value in env.items():
        if variable in HUB_VARIABLES or value is None:
            continue
        if variable in FIXED[service]:
            assert str(value) == FIXED[service][variable]
            continue
        match = INTERPOLATION.match(str(value))
        assert match and match.group("name") == variable, f"{variable}: {value!r}"
        default = match.group("default")
        if variable.endswith("_SERVICE_ADDR"):
            continue  # compose's own addresses, checked above
        expected = settings_env.default_of(service, names[variable])
        assert settings_env.parse_as(service, variable, default) == expected, variable
    assert set(FIXED[service]) <= set(env)


def test_the_gpu_override_reserves_gpus_for_the_model_services_only(compose, gpu_override):
    assert set(gpu_override["services"]) == {"depth", "segment"}
    for service, spec in gpu_override["services"].items():
        assert service in compose["services"]
        assert spec["build"]["args"]["TORCH_VARIANT"] == "cuda"
        (device,) = spec["deploy"]["resources"]["reservations"]["devices"]
        assert device["driver"] == "nvidia"
        assert device["capabilities"] == ["gpu"]
    for service in ("imagegen", "orchestrator"):
        assert "deploy" not in compose["services"][service]


def test_model_images_build_for_the_cpu_unless_told_otherwise(compose):
    for service in ("depth", "segment"):
        args = compose["services"][service]["build"]["args"]
        assert args["TORCH_VARIANT"] == "${TORCH_VARIANT:-cpu}"
        assert args["PRELOAD_MODELS"] == "${PRELOAD_MODELS:-0}"


# ---- the offline smoke variant (scripts/container_smoke.sh) ----------------------------------

@pytest.fixture(scope="module")
def smoke_override() -> dict:
    return yaml.safe_load((REPO / "deploy" / "docker" / "compose.smoke.yml").read_text())


def test_the_smoke_variant_runs_the_built_images_plus_the_fake_openai_server(compose,
                                                                               smoke_override):
    services = smoke_override["services"]
    assert set(services) == set(compose["services"]) | {"openai-fake"}
    for service in SERVICES:
        assert services[service]["image"] == f"scene/{service}:${{SCENE_IMAGE_TAG:-smoke}}"
    fake = services["openai-fake"]
    assert fake["image"] == services["orchestrator"]["image"]
    assert fake["command"][:3] == ["python", "-m", "scene_dev.fakes.openai_server"]
    assert fake["volumes"] == ["./dev/src/scene_dev:/smoke/scene_dev:ro"]
    assert (REPO / "dev" / "src" / "scene_dev" / "fakes" / "openai_server.py").is_file()
    port = fake["command"][fake["command"].index("--port") + 1]
    assert fake["expose"] == [port]
    assert port in " ".join(fake["healthcheck"]["test"])
    imagegen = services["imagegen"]
    assert imagegen["environment"]["OPENAI_BASE_URL"] == f"http://openai-fake:{port}/v1"
    assert imagegen["depends_on"]["openai-fake"]["condition"] == "service_healthy"


def test_the_smoke_variant_configures_the_models_exactly_as_run_py_smoke(smoke_override):
    """The same tiny models and smoke defaults as `make run`'s --smoke (one description of the
    offline stack), mounted at /models."""
    from scene_dev import run_plan as run

    expected = {**run.SMOKE_DEFAULTS, **run.smoke_model_env(Path("/models"))}
    for service in ("depth", "segment"):
        spec = smoke_override["services"][service]
        assert spec["volumes"] == ["${SMOKE_MODELS_DIR:-./.cache/tiny-models}:/models:ro"]
        env = {k: str(v) for k, v in spec["environment"].items()}
        names = set(settings_env.env_names(service)) | HUB_VARIABLES
        assert set(env) <= names, sorted(set(env) - names)
        assert env == {k: v for k, v in expected.items() if k in names}


def test_the_files_are_valid_for_docker_compose_1_29_too(compose, smoke_override,
                                                        gpu_override):
    """Debian's docker-compose (1.29, what `make containers` uses where there is no compose
    plugin) rejects top-level keys other than version/services/volumes/networks/configs/
    secrets and x-* extensions."""
    allowed = {"version", "services", "volumes", "networks", "configs", "secrets"}
    for document in (compose, smoke_override, gpu_override):
        assert {k for k in document if not k.startswith("x-")} <= allowed

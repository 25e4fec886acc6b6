"""deploy/k8s rendered (kustomize) and checked structurally: what the cluster would be given."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.deploy import settings_env
from tests.deploy.kustomize import render

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"
GRPC_PORTS = {"depth": 50051, "segment": 50052, "imagegen": 50053}
MODEL_SERVICES = ("depth", "segment")
SERVICES = [*GRPC_PORTS, "orchestrator"]
NAMESPACE = "scene"


def index(manifests: list[dict]) -> dict[tuple[str, str], dict]:
    return {(m["kind"], m["metadata"]["name"]): m for m in manifests}


@pytest.fixture(scope="module")
def gpu() -> dict[tuple[str, str], dict]:
    return index(render(K8S))


@pytest.fixture(scope="module")
def cpu() -> dict[tuple[str, str], dict]:
    return index(render(K8S / "cpu"))


def container(objects: dict, service: str) -> dict:
    (only,) = objects["Deployment", service]["spec"]["template"]["spec"]["containers"]
    return only


def container_env(objects: dict, service: str) -> dict[str, str]:
    spec = container(objects, service)
    env = {}
    for source in spec.get("envFrom", []):
        env.update(objects["ConfigMap", source["configMapRef"]["name"]]["data"])
    env.update({item["name"]: item["value"] for item in spec.get("env", [])})
    return env


def test_every_service_has_a_deployment_and_a_service_in_the_namespace(gpu):
    for service in SERVICES:
        assert ("Deployment", service) in gpu
        assert ("Service", service) in gpu
    assert ("Namespace", NAMESPACE) in gpu
    for (kind, name), manifest in gpu.items():
        if kind != "Namespace":
            assert manifest["metadata"]["namespace"] == NAMESPACE, (kind, name)


@pytest.mark.parametrize("service", SERVICES)
def test_services_select_their_deployments_pods_on_a_named_port(gpu, service):
    deployment = gpu["Deployment", service]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    k8s_service = gpu["Service", service]
    assert k8s_service["spec"]["selector"].items() <= pod_labels.items()
    port_names = {p["name"] for p in container(gpu, service)["ports"]}
    for port in k8s_service["spec"]["ports"]:
        assert port["targetPort"] in port_names


@pytest.mark.parametrize("service", list(GRPC_PORTS))
def test_grpc_services_are_headless_with_native_grpc_probes(gpu, service):
    port = GRPC_PORTS[service]
    k8s_service = gpu["Service", service]
    # Headless: DNS returns every pod, so the orchestrator's round_robin sees all replicas.
    assert k8s_service["spec"]["clusterIP"] == "None"
    assert [p["port"] for p in k8s_service["spec"]["ports"]] == [port]
    spec = container(gpu, service)
    assert [p["containerPort"] for p in spec["ports"]] == [port]
    assert spec["readinessProbe"]["grpc"]["port"] == port
    assert spec["livenessProbe"]["grpc"]["port"] == port
    # Readiness is the overall server (NOT_SERVING until the model can answer); liveness its own
    # name (SERVING while the process runs): a failed load takes the pod out, never restarts it.
    assert spec["readinessProbe"]["grpc"].get("service", "") == ""
    assert spec["livenessProbe"]["grpc"]["service"] == "liveness"
    env = container_env(gpu, service)
    prefix = "SEG" if service == "segment" else service.upper()
    assert env[f"{prefix}_PORT"] == str(port)


def test_the_orchestrator_is_probed_over_http_and_stores_generations_on_a_claim(gpu):
    spec = container(gpu, "orchestrator")
    assert spec["readinessProbe"]["httpGet"]["path"] == "/health"
    assert spec["livenessProbe"]["httpGet"]["path"] == "/health"
    env = container_env(gpu, "orchestrator")
    pod = gpu["Deployment", "orchestrator"]["spec"]["template"]["spec"]
    claims = {v["name"]: v["persistentVolumeClaim"]["claimName"]
              for v in pod["volumes"] if "persistentVolumeClaim" in v}
    mounts = {m["mountPath"]: m["name"] for m in spec["volumeMounts"]}
    claim = claims[mounts[env["DATA_DIR"]]]
    assert ("PersistentVolumeClaim", claim) in gpu
    # One writer of the volume and of the in-process job queue: never two pods at once.
    deployment = gpu["Deployment", "orchestrator"]["spec"]
    assert deployment["replicas"] == 1
    assert deployment["strategy"]["type"] == "Recreate"


def test_the_orchestrator_reaches_every_pod_through_dns(gpu):
    env = container_env(gpu, "orchestrator")
    for service, port in GRPC_PORTS.items():
        assert env[f"{service.upper()}_SERVICE_ADDR"] == f"dns:///{service}:{port}"
        assert gpu["Service", service]["spec"]["ports"][0]["port"] == port


@pytest.mark.parametrize("service", SERVICES)
def test_resources_are_requested_and_model_services_get_a_gpu(gpu, cpu, service):
    resources = container(gpu, service)["resources"]
    assert {"cpu", "memory"} <= set(resources["requests"])
    assert "memory" in resources["limits"]
    if service in MODEL_SERVICES:
        assert resources["limits"]["nvidia.com/gpu"] == 1
        assert "nvidia.com/gpu" not in container(cpu, service)["resources"]["limits"]
        assert container_env(cpu, service)[
            "DEPTH_DEVICE" if service == "depth" else "SEG_DEVICE"] == "cpu"
    else:
        assert "nvidia.com/gpu" not in resources["limits"]


@pytest.mark.parametrize("service", MODEL_SERVICES)
def test_model_services_scale_horizontally(gpu, service):
    hpa = gpu["HorizontalPodAutoscaler", service]
    assert hpa["apiVersion"] == "autoscaling/v2"
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", service)
    assert 1 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]


@pytest.mark.parametrize("service", SERVICES)
def test_pods_run_unprivileged(gpu, service):
    pod = gpu["Deployment", service]["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container(gpu, service)["securityContext"]["allowPrivilegeEscalation"] is False


@pytest.mark.parametrize("service", SERVICES)
def test_images_are_the_projects_own_builds(gpu, service):
    image = container(gpu, service)["image"]
    name, _, tag = image.partition(":")
    assert name == f"scene/{service}" and tag and tag != "latest"


@pytest.mark.parametrize("service", SERVICES)
def test_every_configured_variable_is_a_setting_of_the_service(gpu, service):
    names = settings_env.env_names(service)
    for variable, value in container_env(gpu, service).items():
        assert variable in names, f"{service}: {variable} is read by nothing"
        # And the value is one the service accepts.
        settings_env.parse_as(service, variable, value)


@pytest.mark.parametrize("profile", ["fast", "balanced"])
def test_profile_overlays_set_one_profile_for_both_model_services_on_the_cpu(profile, cpu):
    objects = index(render(K8S / profile))
    for service in MODEL_SERVICES:
        env = container_env(objects, service)
        assert env["PROFILE"] == profile
        assert not {"DEPTH_MODEL", "SAM_MODEL", "SEG_MODEL"} & set(env), "would override it"
        assert container(objects, service) == container(cpu, service)
    assert container_env(objects, "orchestrator") == container_env(cpu, "orchestrator")


def test_the_base_runs_the_quality_profile(gpu):
    for service in MODEL_SERVICES:
        assert container_env(gpu, service)["PROFILE"] == "quality"

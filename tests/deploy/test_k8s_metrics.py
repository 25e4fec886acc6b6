"""deploy/k8s/metrics rendered: every pod is annotated for scraping on the port its service
actually serves metrics on."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.deploy import settings_env
from tests.deploy.kustomize import render

K8S = Path(__file__).resolve().parents[2] / "deploy" / "k8s"
METRICS_PORT_VARIABLE = {"depth": "DEPTH_METRICS_PORT", "segment": "SEG_METRICS_PORT",
                         "imagegen": "IMAGEGEN_METRICS_PORT"}


@pytest.fixture(scope="module")
def objects() -> dict[tuple[str, str], dict]:
    return {(m["kind"], m["metadata"]["name"]): m for m in render(K8S / "metrics")}


@pytest.mark.parametrize("service", [*METRICS_PORT_VARIABLE, "orchestrator"])
def test_pods_are_annotated_for_the_port_that_serves_metrics(objects, service):
    pod = objects["Deployment", service]["spec"]["template"]
    annotations = pod["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/path"] == "/metrics"
    port = annotations["prometheus.io/port"]
    if service == "orchestrator":
        (container,) = pod["spec"]["containers"]
        assert int(port) in {p["containerPort"] for p in container["ports"]}
        return
    variable = METRICS_PORT_VARIABLE[service]
    assert variable in settings_env.env_names(service)
    config = objects["ConfigMap", f"{service}-config"]["data"]
    assert config[variable] == port

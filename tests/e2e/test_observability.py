"""Metrics and traces over the real processes: one prompt generation through the smoke stack,
then every process's /metrics parsed with prometheus-client's own parser, and the spans the
console exporter printed in each process's log joined into one trace."""

from __future__ import annotations

import json
from collections import defaultdict

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.stack import free_ports, running_stack

pytestmark = pytest.mark.slow
KEY = "sk-e2e-test-key-0123456789"
STAGES = ("queue", "imagegen", "depth", "segment", "pointcloud", "png", "storage", "total")
SERVICES = {"depth": "depth-service", "segment": "segment", "imagegen": "imagegen"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory, tiny_models_dir):
    depth_port, segment_port, imagegen_port = free_ports(3)
    env = {"DEPTH_METRICS_PORT": str(depth_port), "SEG_METRICS_PORT": str(segment_port),
           "IMAGEGEN_METRICS_PORT": str(imagegen_port), "TRACE_EXPORTER": "console",
           "DEPTH_TRACE_EXPORTER": "console", "SEG_TRACE_EXPORTER": "console",
           "IMAGEGEN_TRACE_EXPORTER": "console"}
    with running_stack(tmp_path_factory.mktemp("e2e-observability"), extra_env=env,
                       tiny_models_dir=tiny_models_dir) as stack:
        stack.metrics_ports = {"depth": depth_port, "segment": segment_port,
                               "imagegen": imagegen_port}
        yield stack


@pytest.fixture(scope="module")
def generation(stack) -> dict:
    with httpx.Client(base_url=stack.url, timeout=120) as client:
        response = client.post("/generate", json={"prompt": "a lighthouse at dusk"},
                               headers={"X-OpenAI-Key": KEY})
        assert response.status_code == 200, response.text + stack.logs()
        return client.get(f"/generations/{response.headers['X-Generation-Id']}").json()


def parse(text: str) -> dict[str, list]:
    return {family.name: family.samples for family in text_string_to_metric_families(text)}


def total(families: dict, family: str, sample_name: str, **labels: str) -> float:
    return sum(s.value for s in families.get(family, []) if s.name == sample_name
               and all(s.labels.get(k) == v for k, v in labels.items()))


def test_the_orchestrator_shows_the_generation_in_every_stage(stack, generation):
    families = parse(httpx.get(f"{stack.url}/metrics", timeout=10).text)
    for stage in STAGES:
        assert total(families, "orchestrator_stage_duration_seconds",
                     "orchestrator_stage_duration_seconds_count", stage=stage,
                     mode="standard", quality="standard") == 1, stage
    assert total(families, "orchestrator_jobs_finished", "orchestrator_jobs_finished_total",
                 outcome="completed") == 1


@pytest.mark.parametrize("service", ["depth", "segment", "imagegen"])
def test_each_service_shows_the_generation(stack, generation, service):
    port = stack.metrics_ports[service]
    families = parse(httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text)
    handled = "scene_grpc_server_handled_total"
    ok_calls = total(families, "scene_grpc_server_handled", handled, code="OK")
    assert ok_calls >= 1, families.get("scene_grpc_server_handled")
    assert total(families, "scene_grpc_server_handling_seconds",
                 "scene_grpc_server_handling_seconds_count") >= ok_calls
    states = [s for s in families["scene_model_state"] if s.value == 1]
    assert states and all(s.labels["scene_model_state"] == "loaded" for s in states), states
    if service != "imagegen":
        # Progress reports became passes: the depth global pass, segmentation's stages.
        assert total(families, "scene_inference_pass_seconds",
                     "scene_inference_pass_seconds_count") >= 1
        assert total(families, "scene_inference_items", "scene_inference_items_total") >= 1


def spans_in(log: str) -> list[dict]:
    spans = []
    for line in log.splitlines():
        if line.startswith("{") and '"trace_id"' in line:
            spans.append(json.loads(line))
    return spans


def test_one_trace_holds_spans_from_all_four_processes(stack, generation):
    trace_id = generation["trace_id"]
    assert trace_id and len(trace_id) == 32
    by_process: dict[str, list[dict]] = defaultdict(list)
    for name in ("orchestrator", *SERVICES):
        for span in spans_in(stack.log(name)):
            if span["context"]["trace_id"] == f"0x{trace_id}":
                by_process[name].append(span)
    assert set(by_process) == {"orchestrator", *SERVICES}, stack.logs()
    names = {span["name"] for span in by_process["orchestrator"]}
    assert "generation" in names and "POST /generate" in names
    assert any(span["name"].endswith("StreamEstimateDepth") for span in by_process["depth"])
    for name, spans in by_process.items():
        service_name = spans[0]["resource"]["attributes"]["service.name"]
        assert service_name == SERVICES.get(name, "orchestrator")
    # And the generation's log lines carry the trace id, in the services too.
    for name in ("orchestrator", "depth", "imagegen"):
        assert f"trace={trace_id}" in stack.log(name), name
    # Spans record no message contents: the key the imagegen request carries is in none.
    for name in ("orchestrator", *SERVICES):
        assert KEY not in stack.log(name), name

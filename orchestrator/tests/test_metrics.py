"""GET /metrics: what one generation, a download, a full queue and failures leave there, parsed
with prometheus-client's own text parser."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import grpc
from prometheus_client.parser import text_string_to_metric_families

from orchestrator.metrics import STAGES, failure_reason, quality_of


async def scrape(api) -> dict[str, list]:
    """Metric family name -> its samples."""
    response = await api.client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {family.name: family.samples
            for family in text_string_to_metric_families(response.text)}


def value(families: dict, sample_name: str, **labels: str) -> float | None:
    family = sample_name.removesuffix("_total").removesuffix("_count").removesuffix("_sum")
    for sample in families.get(family, []):
        if sample.name == sample_name and all(sample.labels.get(k) == v
                                              for k, v in labels.items()):
            return sample.value
    return None


async def test_one_generation_shows_in_every_stage_histogram(api):
    response = await api.generate("a red ball on a lawn")
    assert response.status_code == 200, response.text
    families = await scrape(api)

    for stage in STAGES:
        count = value(families, "orchestrator_stage_duration_seconds_count", stage=stage,
                      mode="standard", quality="standard")
        assert count == 1, stage
    assert value(families, "orchestrator_jobs_finished_total", outcome="completed") == 1
    assert value(families, "orchestrator_http_request_duration_seconds_count",
                 method="POST", route="/generate", status="200") == 1
    # Bytes on the wire: after HTTP compression, which the test client asks for.
    assert value(families, "orchestrator_served_bytes_total",
                 format="pcld_float") == int(response.headers["content-length"])
    assert value(families, "orchestrator_stored_generations") == 1
    assert value(families, "orchestrator_queue_depth") == 0
    assert value(families, "orchestrator_jobs_running") == 0


async def test_routes_are_templates_and_downloads_count_by_format(api):
    generation_id = (await api.generate()).headers["x-generation-id"]
    ply = await api.client.get(f"/generations/{generation_id}/pointcloud.ply")
    png = await api.client.get(f"/generations/{generation_id}/depth.png")
    missing = await api.client.get(f"/generations/{'0' * 32}")
    assert (ply.status_code, png.status_code, missing.status_code) == (200, 200, 404)
    families = await scrape(api)

    assert value(families, "orchestrator_served_bytes_total",
                 format="ply") == int(ply.headers["content-length"])
    assert value(families, "orchestrator_served_bytes_total",
                 format="png") == int(png.headers["content-length"])
    assert value(families, "orchestrator_http_request_duration_seconds_count", method="GET",
                 route="/generations/{id}", status="404") == 1
    # No label anywhere holds an id.
    for samples in families.values():
        for sample in samples:
            for label in sample.labels.values():
                assert generation_id not in label and "0" * 32 not in label


async def test_429s_failures_and_cancellations_are_counted(make_api):
    async with make_api(max_concurrent_jobs=1, max_queued_jobs=1) as api:
        api.fakes.depth.behaviour.stall = True
        running = (await api.submit("p1")).json()["id"]
        queued = (await api.submit("p2")).json()["id"]
        assert (await api.submit("one too many")).status_code == 429
        await api.wait_status(running, "running")

        # A scrape while a generation is in flight answers at once, with the live numbers.
        families = await asyncio.wait_for(scrape(api), timeout=5)
        assert value(families, "orchestrator_queue_depth") == 1
        assert value(families, "orchestrator_jobs_running") == 1
        assert value(families, "orchestrator_queue_rejections_total") == 1

        await api.client.post(f"/jobs/{queued}/cancel")
        await api.client.post(f"/jobs/{running}/cancel")
        await api.wait_status(running, "cancelled")
        api.fakes.depth.behaviour.stall = False
        api.fakes.depth.behaviour.fail_code = grpc.StatusCode.UNAVAILABLE
        failed = (await api.submit("p3")).json()["id"]
        await api.wait_status(failed, "failed")
        families = await scrape(api)

    assert value(families, "orchestrator_jobs_finished_total", outcome="cancelled",
                 reason="cancelled") == 2
    assert value(families, "orchestrator_jobs_finished_total", outcome="failed",
                 reason="service_unavailable") == 1
    assert value(families, "orchestrator_http_request_duration_seconds_count", method="POST",
                 route="/jobs", status="429") == 1


async def test_metrics_can_be_turned_off(make_api):
    async with make_api(metrics_enabled=False) as api:
        assert (await api.generate()).status_code == 200
        assert (await api.client.get("/metrics")).status_code == 404
        assert api.app.state.metrics is None


def test_failure_reasons_are_a_small_fixed_set():
    assert failure_reason("cancelled", "cancelled by the client", None) == "cancelled"
    assert failure_reason("failed", "interrupted: the server stopped", 503) == "interrupted"
    assert failure_reason("failed", "depth service unavailable", 503) == "service_unavailable"
    assert failure_reason("failed", "deadline", 504) == "deadline"
    assert failure_reason("failed", "OpenAI: rate limited", 429) == "rate_limited"
    assert failure_reason("failed", "not a 2:1 panorama", 400) == "bad_input"
    assert failure_reason("failed", "internal error: KeyError", 500) == "internal"


def test_quality_is_read_defensively():
    assert quality_of(SimpleNamespace(inputs=SimpleNamespace())) == "standard"
    assert quality_of(SimpleNamespace(inputs=None)) == "standard"
    assert quality_of(SimpleNamespace(inputs=SimpleNamespace(quality="draft"))) == "draft"
    assert quality_of(SimpleNamespace(inputs=SimpleNamespace(quality="ultra"))) == "other"

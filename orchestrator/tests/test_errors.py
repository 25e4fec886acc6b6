"""Errors by kind: a service's internal failure is the server's, told generically; only the
services' InvalidInput (INVALID_ARGUMENT) reaches the client with its words."""

from __future__ import annotations

import grpc
import pytest

INTERNAL_TEXT = ("Traceback (most recent call last): /srv/depth_service/tiling.py line 88: "
                 "operands could not be broadcast together with shapes (3,518) (4,518)")


@pytest.mark.parametrize("service", ["depth", "segment", "imagegen"])
async def test_an_internal_service_error_is_a_502_with_a_generic_detail(api, service, caplog):
    fake = getattr(api.fakes, service)
    fake.behaviour.fail_code = grpc.StatusCode.INTERNAL
    fake.behaviour.fail_message = INTERNAL_TEXT
    response = await api.generate("a lighthouse")
    assert response.status_code == 502, response.text
    detail = response.json()["detail"]
    assert detail == f"the {service} service at {fake.address} failed (INTERNAL)"
    assert "broadcast" not in detail and "Traceback" not in detail
    # The job's record says the same, and it is not the client's fault (no 4xx).
    job = (await api.client.get(f"/jobs/{response.headers['x-generation-id']}")).json()
    assert (job["error"], job["error_status"]) == (detail, 502)
    assert "broadcast" not in api.folder(job["id"]).joinpath("metadata.json").read_text()
    # The text is kept for the operator, in the log.
    assert "broadcast" in caplog.text


async def test_invalid_input_from_a_service_keeps_its_words_as_a_400(api):
    api.fakes.depth.behaviour.fail_code = grpc.StatusCode.INVALID_ARGUMENT
    api.fakes.depth.behaviour.fail_message = "image is 1x1 = 1 pixels, under the minimum"
    response = await api.upload("/generate", api.png())
    assert response.status_code == 400
    assert response.json()["detail"] == "image is 1x1 = 1 pixels, under the minimum"


async def test_an_unexpected_exception_in_the_pipeline_is_internal_not_the_clients(api, monkeypatch,
                                                                                 caplog):
    from orchestrator.pipeline import Pipeline

    def broken(*args, **kwargs):
        raise ValueError("cannot reshape array of size 6144 into shape (64,97)")

    monkeypatch.setattr(Pipeline, "_build_cloud", broken)
    response = await api.generate("a meadow")
    assert response.status_code == 500, response.text
    job = (await api.client.get(f"/jobs/{response.headers['x-generation-id']}")).json()
    assert job["status"] == "failed" and job["error_status"] == 500
    # Logged with its traceback.
    assert "Traceback" in caplog.text and "cannot reshape" in caplog.text

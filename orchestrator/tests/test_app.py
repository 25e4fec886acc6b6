"""The app as a whole: CORS, the viewer and decoder, docs, JSON errors everywhere, the key's
secrecy and the atomicity of storage."""

from __future__ import annotations

import logging
import os

import pytest

import orchestrator.pipeline as pipeline
import orchestrator.storage as storage

GITHUB_PAGES = "https://captaingraybeard.github.io"


@pytest.mark.parametrize("origin", [GITHUB_PAGES, "http://localhost:5173", "http://localhost",
                                    "http://127.0.0.1:8080"])
async def test_cors_allows_the_viewer_and_local_development(api, origin):
    preflight = await api.client.options("/jobs", headers={
        "Origin": origin, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type,x-openai-key,idempotency-key"})
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == origin
    response = await api.client.get("/generations", headers={"Origin": origin})
    assert response.headers["access-control-allow-origin"] == origin


@pytest.mark.parametrize("origin", ["https://evil.example", "http://localhost.evil.example",
                                    "https://captaingraybeard.github.io.evil.example",
                                    "https://localhost:8000"])
async def test_cors_refuses_other_origins(api, origin):
    preflight = await api.client.options("/jobs", headers={
        "Origin": origin, "Access-Control-Request-Method": "POST"})
    assert preflight.status_code == 400
    response = await api.client.get("/generations", headers={"Origin": origin})
    assert "access-control-allow-origin" not in response.headers


async def test_cors_exposes_the_generation_headers(api):
    response = await api.client.post("/generate", json={"prompt": "p"},
                                      headers={"Origin": GITHUB_PAGES, "X-OpenAI-Key": api.key})
    exposed = response.headers["access-control-expose-headers"].lower()
    assert "x-generation-id" in exposed and "server-timing" in exposed


async def test_cors_origins_are_a_comma_separated_list(make_api):
    listed = ["https://scenes.example.org", "http://studio.example.org:8080"]
    async with make_api(cors_origins=", ".join(listed), cors_origin_regex="") as api:
        for origin in listed:
            preflight = await api.client.options("/jobs", headers={
                "Origin": origin, "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type"})
            assert preflight.status_code == 200
            assert preflight.headers["access-control-allow-origin"] == origin
        for origin in (GITHUB_PAGES, "http://localhost:5173", "https://scenes.example.org.evil"):
            refused = await api.client.get("/health", headers={"Origin": origin})
            assert "access-control-allow-origin" not in refused.headers


async def test_cors_origin_regex_is_configurable(make_api):
    async with make_api(cors_origins="",
                        cors_origin_regex=r"https://[a-z]+\.scenes\.example\.org") as api:
        allowed = await api.client.get("/health",
                                       headers={"Origin": "https://team.scenes.example.org"})
        assert allowed.headers["access-control-allow-origin"] == "https://team.scenes.example.org"
        refused = await api.client.get("/health", headers={"Origin": GITHUB_PAGES})
        assert "access-control-allow-origin" not in refused.headers


async def test_the_viewer_and_the_decoder_are_served(api):
    index = await api.client.get("/")
    assert index.status_code == 200
    assert index.headers["content-type"].startswith("text/html")
    decoder = await api.client.get("/lib/pcld.js")
    assert decoder.status_code == 200
    assert decoder.headers["content-type"].startswith("text/javascript")


async def test_openapi_docs(api):
    assert (await api.client.get("/docs")).status_code == 200
    schema = (await api.client.get("/openapi.json")).json()
    for path in ("/generate", "/jobs", "/jobs/{id}", "/jobs/{id}/events", "/jobs/{id}/cancel",
                 "/generations", "/generations/{id}", "/generations/{id}/{asset}", "/health"):
        assert path in schema["paths"], path
    body = schema["paths"]["/generate"]["post"]["requestBody"]["content"]
    assert set(body) == {"application/json", "multipart/form-data"}


async def test_unknown_paths_are_json_404(api):
    response = await api.client.get("/no/such/thing")
    assert response.status_code == 404
    assert response.json() == {"detail": "Not Found"}
    response = await api.client.put("/jobs")
    assert response.status_code == 405
    assert "detail" in response.json()


# -- the key -------------------------------------------------------------------------------


async def test_the_key_never_reaches_disk_or_logs(api, caplog):
    caplog.set_level(logging.DEBUG)
    key = api.key
    ok = await api.client.post("/generate", json={"prompt": "p", "openai_api_key": key})
    assert ok.status_code == 200
    await api.client.post("/jobs", json={"prompt": "p"}, headers={"Authorization": f"Bearer {key}"})
    # A service that echoes the key in its error must not get it stored or logged either.
    api.fakes.imagegen.behaviour.fail_code = __import__("grpc").StatusCode.UNAUTHENTICATED
    api.fakes.imagegen.behaviour.fail_message = f"Incorrect API key provided: {key}"
    refused = await api.generate()
    assert refused.status_code == 401
    assert key not in refused.text
    assert "[redacted]" in refused.json()["detail"]
    # A validation error must not echo the body it rejected.
    invalid = await api.client.post("/generate", json={"openai_api_key": key, "mode": "x"})
    assert invalid.status_code == 422 and key not in invalid.text
    jobs = await api.client.get("/jobs")
    assert key not in jobs.text
    await api.runtime.jobs.close()  # flush every job to disk

    # Every log line of this process but the fake imagegen server's own (it echoes the key on
    # purpose above: a real service must not, and that is its tests' business).
    ours = [r.getMessage() for r in caplog.records if r.name != "scene_rpc.server"]
    assert ours and not any(key in line for line in ours)
    assert files_containing(api.data_dir, key.encode()) == []


def files_containing(folder, needle: bytes) -> list[str]:
    found = []
    for root, _, names in os.walk(folder):
        for name in names:
            with open(os.path.join(root, name), "rb") as handle:
                if needle in handle.read():
                    found.append(name)
    return found


# -- atomic storage ------------------------------------------------------------------------


async def test_a_failure_while_staging_leaves_a_failed_record_and_no_assets(api, monkeypatch,
                                                                           caplog):
    def fail_midway(folder, files):
        (folder / "image.png").write_bytes(files["image.png"])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pipeline, "_write_files", fail_midway)
    response = await api.generate()
    assert response.status_code == 500
    generation_id = response.headers["x-generation-id"]
    assert api.files_in(api.folder(generation_id)) == ["metadata.json"]
    assert api.files_in(api.data_dir / "tmp") == []
    record = api.record(generation_id)
    # The server's own trouble: the generic answer to the client, the reason in the log.
    assert (record["status"], record["error"]) == ("failed", "internal error")
    assert "No space left" in caplog.text


async def test_a_failure_during_the_commit_rolls_it_back(api, monkeypatch):
    real_replace = os.replace
    moved = []

    def failing_replace(src, dst):
        if str(dst).endswith(".png") and len(moved) == 2:
            raise OSError(5, "Input/output error")
        moved.append(dst)
        return real_replace(src, dst)

    monkeypatch.setattr(storage.os, "replace", failing_replace)
    response = await api.generate()
    assert response.status_code == 500
    generation_id = response.headers["x-generation-id"]
    monkeypatch.undo()
    assert api.files_in(api.folder(generation_id)) == ["metadata.json"]
    record = api.record(generation_id)
    assert record["status"] == "failed"
    assert "could not store the generation" in record["error"]
    assert (await api.client.get(f"/generations/{generation_id}/image.png")).status_code == 404


# -- health --------------------------------------------------------------------------------


async def test_health_reports_each_service(api):
    response = await api.client.get("/health")
    assert response.status_code == 200
    health = response.json()
    assert health["status"] == "ok" and health["reason"] is None
    for name in ("depth", "segment", "imagegen"):
        service = health["services"][name]
        assert service["serving"] is True and service["status"] == "SERVING"
        (model,) = service["info"]["models"]
        assert model["loaded"] is True and model["device"] == "cpu"
    assert health["services"]["depth"]["info"]["models"][0]["model_id"] == "fake/depth"
    assert health["jobs"]["running"] == 0


async def test_health_is_degraded_naming_a_service_that_is_down(api):
    await api.fakes.depth.stop()
    response = await api.client.get("/health")
    assert response.status_code == 200
    health = response.json()
    assert health["status"] == "degraded"
    assert "depth service" in health["reason"] and api.fakes.depth.address in health["reason"]
    assert health["services"]["depth"]["serving"] is False
    assert health["services"]["segment"]["serving"] is True


async def test_health_says_not_serving_during_a_graceful_shutdown(api):
    await api.fakes.segment.health.enter_graceful_shutdown()
    health = (await api.client.get("/health")).json()
    assert health["status"] == "degraded"
    assert health["services"]["segment"]["status"] == "NOT_SERVING"


async def test_an_unexpected_error_is_a_generic_500_and_the_connection_survives(api, monkeypatch,
                                                                               caplog):
    async def broken(limit):
        raise ValueError("operands could not be broadcast together with shapes (3,) (4,)")

    monkeypatch.setattr(api.runtime.jobs, "list", broken)
    response = await api.client.get("/jobs")
    assert response.status_code == 500
    assert response.json() == {"detail": "internal error"}
    assert "broadcast" in caplog.text  # the traceback is in the log, not in the answer
    monkeypatch.undo()
    after = await api.client.get("/jobs")
    assert after.status_code == 200
    # Over the same connection: the server did not close it after the 500.
    stream = "network_stream"
    assert (after.extensions[stream].get_extra_info("client_addr")
            == response.extensions[stream].get_extra_info("client_addr"))

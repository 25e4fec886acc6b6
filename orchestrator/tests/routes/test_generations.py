"""/generations: listing, metadata, assets (and path tricks), deletion."""

from __future__ import annotations

import asyncio
import gzip
import io
import json

import numpy as np
import pytest
from PIL import Image
from plyfile import PlyData

from pointcloud import CATEGORY_PALETTE, decode
from scene_dev.fakes.grpc_services import fake_categories, fake_depth


@pytest.fixture
async def generated(api):
    """Three generations (one failed), oldest first."""
    ids = []
    for prompt in ("first", "second"):
        response = await api.generate(prompt)
        assert response.status_code == 200
        ids.append(response.headers["x-generation-id"])
    api.fakes.depth.behaviour.fail_code = __import__("grpc").StatusCode.INTERNAL
    failed = await api.generate("third")
    api.fakes.depth.behaviour.fail_code = None
    ids.append(failed.headers["x-generation-id"])
    return ids


async def test_list_newest_first_with_pagination(api, generated):
    page = (await api.client.get("/generations", params={"limit": 2})).json()
    assert page["total"] == 3 and page["limit"] == 2 and page["offset"] == 0
    assert [item["id"] for item in page["items"]] == generated[::-1][:2]
    rest = (await api.client.get("/generations", params={"limit": 2, "offset": 2})).json()
    assert [item["id"] for item in rest["items"]] == generated[:1]
    completed = (await api.client.get("/generations", params={"status": "completed"})).json()
    assert completed["total"] == 2
    assert all("job" not in item for item in page["items"])
    assert (await api.client.get("/generations", params={"limit": 0})).status_code == 422


async def test_a_cursor_pages_like_the_offset(api, generated):
    """Keyset pagination: each page's next_cursor starts the next page where offset would."""
    first = (await api.client.get("/generations", params={"limit": 1})).json()
    seen = [item["id"] for item in first["items"]]
    cursor = first["next_cursor"]
    while cursor is not None:
        page = (await api.client.get("/generations",
                                     params={"limit": 1, "cursor": cursor})).json()
        assert page["total"] == 3
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
    assert seen == generated[::-1]
    failed = (await api.client.get("/generations", params={"status": "failed"})).json()
    assert failed["next_cursor"] is None and len(failed["items"]) == 1
    for bad in ("nonsense", "%%%", "YQ", "x" * 201):
        refused = await api.client.get("/generations", params={"cursor": bad})
        assert refused.status_code == 422
        assert refused.json()["detail"][0]["loc"] == ["query", "cursor"]


async def test_metadata(api, generated):
    record = (await api.client.get(f"/generations/{generated[0]}")).json()
    assert record["id"] == generated[0] and record["status"] == "completed"
    assert record["prompt"] == "first"
    assert set(record["assets"]) == {"image.png", "depth.png", "segments.png", "pointcloud.bin"}
    failed = (await api.client.get(f"/generations/{generated[2]}")).json()
    assert failed["status"] == "failed" and "depth service" in failed["error"]


async def test_assets_are_served_with_their_types(api, generated):
    generation_id = generated[0]
    base = f"/generations/{generation_id}"
    image = await api.client.get(f"{base}/image.png")
    assert image.headers["content-type"] == "image/png"
    rgb = np.asarray(Image.open(io.BytesIO(image.content)).convert("RGB"))
    assert rgb.shape == (64, 96, 3)

    depth = Image.open(io.BytesIO((await api.client.get(f"{base}/depth.png")).content))
    assert depth.mode == "I;16"
    expected = np.rint(fake_depth(rgb) * 65535)
    assert np.abs(np.asarray(depth, dtype=np.int64) - expected).max() <= 1

    segments = Image.open(io.BytesIO((await api.client.get(f"{base}/segments.png")).content))
    assert segments.mode == "P"
    np.testing.assert_array_equal(np.asarray(segments), fake_categories(rgb))
    palette = np.array(segments.getpalette()[:18], dtype=np.uint8).reshape(6, 3)
    np.testing.assert_array_equal(palette, CATEGORY_PALETTE)

    cloud_bin = await api.client.get(f"{base}/pointcloud.bin")
    assert cloud_bin.headers["content-type"] == "application/octet-stream"
    cloud = decode(cloud_bin.content)
    assert len(cloud) == 96 * 64

    ply = await api.client.get(f"{base}/pointcloud.ply")
    assert ply.status_code == 200
    assert PlyData.read(io.BytesIO(ply.content))["vertex"].count == len(cloud)

    quantized = await api.client.get(f"{base}/pointcloud.bin", params={"format": "quantized"})
    assert len(quantized.content) < len(cloud_bin.content)
    assert len(decode(quantized.content)) == len(cloud)


async def test_a_failed_generation_has_no_assets(api, generated):
    response = await api.client.get(f"/generations/{generated[2]}/image.png")
    assert response.status_code == 404
    assert "failed" in response.json()["detail"]


async def test_unknown_ids_and_assets_are_404(api, generated):
    unknown = "0123456789abcdef0123456789abcdef"
    for path in (f"/generations/{unknown}", f"/generations/{unknown}/image.png",
                 f"/generations/{generated[0]}/metadata.json",
                 f"/generations/{generated[0]}/secret.txt", "/generations/NOT-AN-ID"):
        response = await api.client.get(path)
        assert response.status_code == 404, path
        assert "detail" in response.json()


async def raw_get(url: str, path: str) -> tuple[int, bytes]:
    """GET ``path`` exactly as written (clients normalise dot segments and escapes)."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
    await writer.drain()
    data = await reader.read()
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


PATH_TRICKS = [
    "/generations/{id}/../../../../etc/passwd",
    "/generations/{id}/..%2F..%2F..%2Fetc%2Fpasswd",
    "/generations/{id}/%2e%2e/%2e%2e/metadata.json",
    "/generations/{id}/%2e%2e%2fmetadata.json",
    "/generations/{id}/..%5cmetadata.json",
    "/generations/{id}//etc/passwd",
    "/generations/{id}/%2Fetc%2Fpasswd",
    "/generations/%2Fetc%2Fpasswd/image.png",
    "/generations/..%2F..%2Fdata/image.png",
    "/generations/{id}/image.png%00.txt",
    "/generations/{id}/.%2Fmetadata.json",
    "/generations/{id}/%252e%252e%252fmetadata.json",
    "/generations/{id}/%2e%2e%2f%2e%2e%2f%2e%2e%2fsettings.py",
    "/static/../../orchestrator/settings.py",
    "/..%2F..%2F..%2Fetc%2Fpasswd",
    "/js/..%2F..%2Fsettings.py",
]


async def test_path_tricks_never_reach_a_file(api, generated):
    for trick in PATH_TRICKS:
        status, body = await raw_get(api.url, trick.format(id=generated[0]))
        assert status in (400, 404), (trick, status)
        assert b"root:" not in body and b'"prompt"' not in body, trick
        assert b"BaseSettings" not in body, trick
        if status == 404:
            assert "detail" in json.loads(body), trick


async def test_delete(api, generated):
    generation_id = generated[0]
    response = await api.client.delete(f"/generations/{generation_id}")
    assert response.status_code == 204
    assert not api.folder(generation_id).exists()
    assert (await api.client.get(f"/generations/{generation_id}")).status_code == 404
    assert (await api.client.get(f"/jobs/{generation_id}")).status_code == 404
    assert (await api.client.delete(f"/generations/{generation_id}")).status_code == 404
    assert (await api.client.get("/generations")).json()["total"] == 2


async def test_deleting_a_running_generation_cancels_it(api):
    api.fakes.depth.behaviour.stall = True
    job_id = (await api.submit()).json()["id"]
    call = await api.fakes.depth.wait_for_call()
    assert (await api.client.delete(f"/generations/{job_id}")).status_code == 204
    await asyncio.wait_for(call.cancelled.wait(), 5)
    assert not api.folder(job_id).exists()


async def test_grid_variant_of_a_stored_cloud_made_once_and_kept(api, generated):
    base = f"/generations/{generated[0]}/pointcloud.bin"
    v1 = decode((await api.client.get(base)).content)
    first = await api.client.get(base, params={"format": "grid"})
    assert first.status_code == 200, first.text
    assert first.headers["content-type"] == "application/x-pcld-grid"
    grid = decode(first.content)
    assert len(grid) == len(v1)
    np.testing.assert_allclose(grid.positions, v1.positions, rtol=1e-3, atol=1e-6)
    kept = api.folder(generated[0]) / "pointcloud.grid.bin"
    assert kept.read_bytes() == first.content
    again = await api.client.get(base, params={"format": "grid"})
    assert again.content == first.content
    bad = await api.client.get(base, params={"format": "zip"})
    assert bad.status_code == 422
    assert all(name in json.dumps(bad.json()["detail"]) for name in ("float", "quantized", "grid"))


async def test_binary_formats_are_gzipped_when_asked_and_grids_are_not(api, generated):
    base = f"/generations/{generated[0]}/pointcloud.bin"
    plain = await api.client.get(base, headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers
    async with api.client.stream("GET", base, headers={"Accept-Encoding": "gzip"}) as zipped:
        assert zipped.headers["content-encoding"] == "gzip"
        wire = b"".join([chunk async for chunk in zipped.aiter_raw()])
    assert gzip.decompress(wire) == plain.content
    assert len(wire) < len(plain.content)
    grid = await api.client.get(base, params={"format": "grid"},
                                headers={"Accept-Encoding": "gzip"})
    assert "content-encoding" not in grid.headers  # JPEG and PNG inside: gzip would only cost


async def test_a_restart_fails_a_job_cut_mid_run_and_clears_its_event_id(make_api):
    """A job interrupted mid-run (its record still says running, with the id of the last event
    it sent): after the restart it is failed/interrupted, its stale event id is gone (the end
    replays with an id above any the old process used) and the listing shows no bookkeeping."""
    async with make_api() as api:
        generated = await api.generate("first")
        done_id = generated.headers["x-generation-id"]
        record = api.record(done_id)
    cut_id = "c" * 32
    record.update(id=cut_id, status="running", stage="depth", progress=0.4,
                  created_at="2999-01-01T00:00:00Z", finished_at=None)
    record["job"]["last_event_id"] = 7
    folder = api.data_dir / "generations" / cut_id
    folder.mkdir()
    (folder / "metadata.json").write_text(json.dumps(record))
    (folder / "depth.png").write_bytes(b"partial")

    async with make_api() as api:
        job = (await api.client.get(f"/jobs/{cut_id}")).json()
        assert (job["status"], job["error"], job["error_status"]) == ("failed", "interrupted", 503)
        assert job["stage"] is None
        stored = api.record(cut_id)
        assert stored["job"]["last_event_id"] is None
        assert "last_event_id" not in stored and "queue_position" not in stored
        assert api.files_in(folder) == ["metadata.json"]
        events = await api.client.get(f"/jobs/{cut_id}/events", params={"after": 7})
        assert "event: failed" in events.text
        page = (await api.client.get("/generations")).json()
        assert [item["id"] for item in page["items"]] == [cut_id, done_id]
        for item in page["items"]:
            assert not {"job", "last_event_id", "queue_position"} & set(item)
        assert (await api.client.get("/generations", params={"status": "failed"})).json()[
            "total"] == 1


async def test_records_of_earlier_versions_still_load(api):
    """An old record: a key this version does not know, optional ones missing, and the stray
    top-level keys the old restart recovery wrote."""
    old_id = "d" * 32
    folder = api.data_dir / "generations" / old_id
    folder.mkdir(parents=True)
    (folder / "metadata.json").write_text(json.dumps({
        "id": old_id, "status": "failed", "error": "interrupted", "created_at": "2020-01-01",
        "prompt": "old", "some_retired_field": {"x": 1}, "last_event_id": None,
        "queue_position": None, "job": {"idempotency_key": None, "last_event_id": 9}}))
    await api.runtime.store.import_files()
    shown = (await api.client.get(f"/generations/{old_id}")).json()
    assert shown["status"] == "failed" and shown["prompt"] == "old"
    assert not {"some_retired_field", "last_event_id", "queue_position", "job"} & set(shown)
    assert (await api.runtime.store.read_record(old_id)).job.last_event_id is None
    page = (await api.client.get("/generations")).json()
    assert [item["id"] for item in page["items"]] == [old_id]
    job = (await api.client.get(f"/jobs/{old_id}")).json()
    assert job["status"] == "failed" and job["mode"] == "standard"

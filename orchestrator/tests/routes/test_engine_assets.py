"""scene.glb and scene.splat of a generation, /generate?format=glb, and the audio descriptors in
the record and the stored header."""

from __future__ import annotations

import asyncio
import io
import json
import threading
from dataclasses import replace

import numpy as np
import trimesh

from orchestrator import formats
from orchestrator.enums import OutputFormat
from orchestrator.records import GenerationRecord
from orchestrator.storage import STORED_ASSETS
from pointcloud import PointCloud, decode, encode
from pointcloud.glb import quantized_error_bound
from pointcloud.splat import decode as decode_splat
from pointcloud.splat import edge_opacity

UNKNOWN = "0123456789abcdef0123456789abcdef"


async def completed(api) -> str:
    response = await api.generate("a fox in a forest")
    assert response.status_code == 200, response.text
    return response.headers["x-generation-id"]


def glb_positions(data: bytes) -> np.ndarray:
    """World positions (trimesh's dump() applies the node transform of quantised positions)."""
    (points,) = trimesh.load(io.BytesIO(data), file_type="glb").dump()
    return np.asarray(points.vertices)


def assert_glb_holds(data: bytes, stored: PointCloud) -> None:
    """Quantised (the default for a scene this small): within the stated bound."""
    assert b"KHR_mesh_quantization" in data[:4096]
    error = np.abs(glb_positions(data) - stored.positions)
    assert error.max() <= quantized_error_bound(*stored.bounds())


async def test_descriptors_in_the_record_and_the_stored_header(api):
    generation_id = await completed(api)
    record = api.record(generation_id)
    stored = decode((api.folder(generation_id) / "pointcloud.bin").read_bytes())
    assert record["descriptors"] == stored.header["descriptors"]
    descriptors = record["descriptors"]
    assert descriptors["count"] == len(stored) == record["point_count"]
    assert sum(c["count"] for c in descriptors["categories"]) == len(stored)
    # Labels come from the segment service's response, grouped by their category.
    labelled = {label["label"] for c in descriptors["categories"] for label in c["labels"]}
    assert labelled == {label["label"] for label in record["labels"]}
    assert record["point_stride"] == api.settings.point_stride
    # The quantised variant carries the same descriptors.
    quantized = await api.client.get(f"/generations/{generation_id}/pointcloud.bin",
                                     params={"format": "quantized"})
    assert decode(quantized.content).header["descriptors"] == record["descriptors"]
    assert "descriptors" in api.runtime.jobs.get(generation_id).timing_ms


async def test_glb_is_built_once_and_holds_the_stored_cloud(api):
    generation_id = await completed(api)
    base = f"/generations/{generation_id}"
    first = await api.client.get(f"{base}/scene.glb")
    assert first.status_code == 200
    assert first.headers["content-type"] == "model/gltf-binary"
    stored = decode((await api.client.get(f"{base}/pointcloud.bin")).content)
    assert_glb_holds(first.content, stored)
    assert (api.folder(generation_id) / "scene.glb").read_bytes() == first.content
    again = await api.client.get(f"{base}/scene.glb")
    assert again.content == first.content
    # format=float: the exact float32 positions, made per request (the cached file stays).
    exact = await api.client.get(f"{base}/scene.glb", params={"format": "float"})
    assert exact.status_code == 200 and exact.headers["content-type"] == "model/gltf-binary"
    assert b"KHR_mesh_quantization" not in exact.content[:4096]
    np.testing.assert_array_equal(glb_positions(exact.content).astype(np.float32),
                                  stored.positions)
    assert (api.folder(generation_id) / "scene.glb").read_bytes() == first.content
    forced = await api.client.get(f"{base}/scene.glb", params={"format": "quantized"})
    assert forced.content == first.content


async def test_splat_is_32_bytes_a_point(api):
    generation_id = await completed(api)
    response = await api.client.get(f"/generations/{generation_id}/scene.splat")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/octet-stream"
    stored = decode((api.folder(generation_id) / "pointcloud.bin").read_bytes())
    assert len(response.content) == 32 * len(stored)
    records = decode_splat(response.content)
    np.testing.assert_array_equal(records["position"], stored.positions)
    np.testing.assert_array_equal(records["rgba"][:, :3], stored.colors)
    # The fake image is 96 px wide at the default 60° field of view: one pixel spans
    # 2 tan(30°) / 96 radians; a Gaussian's sigma is 0.6 of that footprint.
    distance = np.linalg.norm(stored.positions, axis=1)
    expected = distance * 2 * np.tan(np.radians(30)) / 96 * 0.6
    np.testing.assert_allclose(records["scale"][:, 0], expected, rtol=1e-4)
    # The generation was cleaned with the edge mask (EDGE_RTOL's default): opacity falls beside
    # its depth edges (pointcloud-lib's tests check where, on synthetic steps).
    rtol = api.record(generation_id)["edges"]["rtol"]
    assert rtol == api.settings.edge_rtol > 0
    np.testing.assert_array_equal(records["rgba"][:, 3], edge_opacity(stored, rtol))


async def test_gaussian_ply_holds_the_splats(api):
    from plyfile import PlyData

    generation_id = await completed(api)
    base = f"/generations/{generation_id}"
    response = await api.client.get(f"{base}/gaussians.ply")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/x-ply"
    splat = decode_splat((await api.client.get(f"{base}/scene.splat")).content)
    vertex = PlyData.read(io.BytesIO(response.content))["vertex"]
    assert vertex.count == len(splat)
    alpha = 1 / (1 + np.exp(-vertex["opacity"].astype(np.float64)))
    np.testing.assert_allclose(alpha * 255, splat["rgba"][:, 3], atol=0.5)
    np.testing.assert_allclose(np.exp(vertex["scale_0"]), splat["scale"][:, 0], rtol=1e-5)


async def test_concurrent_first_requests_build_once(api, monkeypatch):
    generation_id = await completed(api)
    builds = []
    release = threading.Event()
    real = formats.FORMATS[OutputFormat.GLB]

    def slow_build(source):
        builds.append(source)
        release.wait(5)  # every request arrives while the first build runs
        return real.build(source)

    monkeypatch.setitem(formats.FORMATS, OutputFormat.GLB, replace(real, build=slow_build))
    url = f"/generations/{generation_id}/scene.glb"
    requests = [asyncio.ensure_future(api.client.get(url)) for _ in range(6)]
    await api.wait_until(lambda: len(builds) == 1)
    await asyncio.sleep(0.2)
    release.set()
    responses = await asyncio.gather(*requests)
    assert len(builds) == 1
    assert all(r.status_code == 200 for r in responses)
    assert len({r.content for r in responses}) == 1
    # Nothing but the finished file is left in the folder (no temporary files).
    assert sorted(p.name for p in api.folder(generation_id).iterdir()) == sorted(
        [*STORED_ASSETS, "metadata.json", "scene.glb"])


async def test_failed_cancelled_and_unknown_generations_are_404(api):
    api.fakes.depth.behaviour.fail_code = __import__("grpc").StatusCode.INTERNAL
    failed = (await api.generate("broken")).headers["x-generation-id"]
    api.fakes.depth.behaviour.fail_code = None
    api.fakes.depth.behaviour.stall = True
    cancelled = (await api.submit()).json()["id"]
    await api.fakes.depth.wait_for_call()
    await api.client.post(f"/jobs/{cancelled}/cancel")
    await api.wait_status(cancelled, "cancelled")
    api.fakes.depth.behaviour.stall = False
    for generation_id, word in ((failed, "failed"), (cancelled, "cancelled"),
                                (UNKNOWN, "no generation")):
        for asset in ("scene.glb", "scene.glb?format=float", "scene.splat", "gaussians.ply"):
            response = await api.client.get(f"/generations/{generation_id}/{asset}")
            assert response.status_code == 404, (generation_id, asset)
            assert word in response.json()["detail"]


async def test_a_zero_point_generation_gives_an_empty_glb_and_splat(api):
    store = api.runtime.store
    generation_id = "f" * 32
    empty = PointCloud(np.zeros((0, 3), np.float32), np.zeros((0, 3), np.uint8),
                       np.zeros(0, np.uint8))
    staging = store.staging(generation_id)
    for name in STORED_ASSETS:
        (staging / name).write_bytes(b"")
    (staging / "pointcloud.bin").write_bytes(encode(empty, mode="planar", cloud_id=generation_id))
    await store.commit(staging, GenerationRecord.build(
        id=generation_id, status="completed", point_count=0, image={"width": 4, "height": 4}))
    glb = await api.client.get(f"/generations/{generation_id}/scene.glb")
    assert glb.status_code == 200 and glb.content[:4] == b"glTF"
    document = json.loads(glb.content[20:])
    assert document["scenes"][0]["extras"]["point_count"] == 0
    splat = await api.client.get(f"/generations/{generation_id}/scene.splat")
    assert splat.status_code == 200 and splat.content == b""


async def test_generate_answers_glb_on_request(api):
    for params, headers in (({"format": "glb"}, {}), ({}, {"Accept": "model/gltf-binary"})):
        response = await api.client.post("/generate", json={"prompt": "a boat"}, params=params,
                                          headers={"X-OpenAI-Key": api.key, **headers})
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "model/gltf-binary"
        assert "glb;dur=" in response.headers["server-timing"]
        generation_id = response.headers["x-generation-id"]
        stored = decode((api.folder(generation_id) / "pointcloud.bin").read_bytes())
        assert_glb_holds(response.content, stored)


async def test_openapi_describes_the_engine_files(api):
    schema = (await api.client.get("/openapi.json")).json()
    asset = schema["paths"]["/generations/{id}/{asset}"]["get"]
    assert "model/gltf-binary" in asset["responses"]["200"]["content"]
    assert all(name in asset["description"] for name in ("scene.glb", "scene.splat",
                                                          "gaussians.ply"))
    generate = schema["paths"]["/generate"]["post"]
    assert "model/gltf-binary" in generate["responses"]["200"]["content"]
    formats = next(p for p in generate["parameters"] if p["name"] == "format")
    assert "glb" in json.dumps(formats["schema"])

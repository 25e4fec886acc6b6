"""?geometry=mesh (scene.glb, pointcloud.ply, POST /generate?format=glb), scene.spz, the formats
/limits offers and the browser modules under /lib."""

from __future__ import annotations

import gzip
import io
import json
import struct

import numpy as np
import plyfile
import pytest
import trimesh

from pointcloud import decode, mesh_from_cloud

TRIANGLES = 4


async def completed(api) -> str:
    response = await api.generate("a fox in a forest")
    assert response.status_code == 200, response.text
    return response.headers["x-generation-id"]


def glb_document(data: bytes) -> dict:
    length = struct.unpack_from("<I", data, 12)[0]
    return json.loads(data[20:20 + length])


async def test_scene_glb_as_a_mesh_of_the_depth_grid(api):
    generation_id = await completed(api)
    base = f"/generations/{generation_id}"
    response = await api.client.get(f"{base}/scene.glb", params={"geometry": "mesh"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "model/gltf-binary"
    document = glb_document(response.content)
    (primitive,) = document["meshes"][0]["primitives"]
    assert primitive["mode"] == TRIANGLES
    assert {"POSITION", "NORMAL", "COLOR_0", "_SEGMENT"} <= set(primitive["attributes"])
    extras = document["scenes"][0]["extras"]
    assert extras["geometry"] == "mesh" and "camera" in extras and "descriptors" in extras

    mesh = trimesh.load(io.BytesIO(response.content), file_type="glb", force="mesh")
    stored = decode((await api.client.get(f"{base}/pointcloud.bin")).content)
    expected = mesh_from_cloud(stored)
    assert (len(mesh.vertices), len(mesh.faces)) == (expected.vertex_count,
                                                     expected.triangle_count)
    # A photo without large masked regions: nearly two triangles a vertex.
    assert 1.5 <= len(mesh.faces) / len(mesh.vertices) <= 2.0
    # Cached beside the points' GLB, which stays what it was.
    folder = api.folder(generation_id)
    assert (folder / "scene.mesh.glb").read_bytes() == response.content
    points = await api.client.get(f"{base}/scene.glb")
    assert glb_document(points.content)["meshes"][0]["primitives"][0]["mode"] == 0


async def test_pointcloud_ply_as_a_mesh(api):
    generation_id = await completed(api)
    response = await api.client.get(f"/generations/{generation_id}/pointcloud.ply",
                                    params={"geometry": "mesh"})
    assert response.status_code == 200
    ply = plyfile.PlyData.read(io.BytesIO(response.content))
    stored = decode(api.folder(generation_id).joinpath("pointcloud.bin").read_bytes())
    expected = mesh_from_cloud(stored)
    assert ply["vertex"].count == expected.vertex_count
    assert ply["face"].count == expected.triangle_count
    np.testing.assert_array_equal(np.stack(ply["face"]["vertex_indices"]), expected.indices)


@pytest.mark.parametrize("asset", ["scene.splat", "image.png", "pointcloud.bin", "scene.spz"])
async def test_a_mesh_of_a_file_without_faces_is_a_400_naming_those_with(api, asset):
    generation_id = await completed(api)
    response = await api.client.get(f"/generations/{generation_id}/{asset}",
                                    params={"geometry": "mesh"})
    assert response.status_code == 400
    detail = response.json()["detail"]
    assert asset in detail and "scene.glb" in detail and "pointcloud.ply" in detail


async def test_an_unknown_geometry_is_a_422(api):
    generation_id = await completed(api)
    response = await api.client.get(f"/generations/{generation_id}/scene.glb",
                                    params={"geometry": "voxels"})
    assert response.status_code == 422


async def test_generate_answers_with_a_mesh_glb(api):
    response = await api.client.post("/generate", params={"format": "glb", "geometry": "mesh"},
                                     json={"prompt": "a fox"}, headers={"X-OpenAI-Key": api.key})
    assert response.status_code == 200, response.text
    assert glb_document(response.content)["meshes"][0]["primitives"][0]["mode"] == TRIANGLES


async def test_generate_refuses_a_mesh_of_a_format_without_faces_before_queueing(api):
    response = await api.client.post("/generate", params={"geometry": "mesh"},
                                     json={"prompt": "a fox"}, headers={"X-OpenAI-Key": api.key})
    assert response.status_code == 400
    assert "format=float" in response.json()["detail"]
    assert api.runtime.jobs.stats["queued"] == api.runtime.jobs.stats["running"] == 0
    assert (await api.client.get("/generations")).json()["total"] == 0


async def test_scene_spz_holds_the_splats_gaussians(api):
    generation_id = await completed(api)
    base = f"/generations/{generation_id}"
    response = await api.client.get(f"{base}/scene.spz")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/octet-stream"
    raw = gzip.decompress(response.content)
    magic, version, count = struct.unpack_from("<III", raw, 0)
    assert (magic, version) == (0x5053474E, 3)
    splat = (await api.client.get(f"{base}/scene.splat")).content
    assert count == len(splat) // 32
    assert (api.folder(generation_id) / "scene.spz").read_bytes() == response.content


async def test_limits_lists_the_formats_and_their_geometries(api):
    offered = {f["format"]: f for f in (await api.client.get("/limits")).json()["formats"]}
    assert offered["glb"]["name"] == "scene.glb"
    assert offered["glb"]["geometry"] == ["points", "mesh"]
    assert offered["ply"]["geometry"] == ["points", "mesh"]
    assert offered["spz"] == {"name": "scene.spz", "format": "spz",
                              "media_type": "application/octet-stream",
                              "geometry": ["points"], "on_generate": False}
    assert offered["float"]["on_generate"] and not offered["splat"]["on_generate"]


@pytest.mark.parametrize("name", ["pcld.js", "audio-react.js"])
async def test_the_browser_modules_are_served(api, name):
    response = await api.client.get(f"/lib/{name}")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/javascript")
    assert b"export" in response.content


async def test_an_unknown_browser_module_is_a_404(api):
    response = await api.client.get("/lib/../settings.py")
    assert response.status_code == 404
    response = await api.client.get("/lib/other.js")
    assert response.status_code == 404 and "pcld.js" in response.json()["detail"]

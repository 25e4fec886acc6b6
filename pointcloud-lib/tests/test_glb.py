"""scene.glb: 0 errors from the Khronos validator, the stored cloud's exact positions (float32)
or positions within the stated bound (KHR_mesh_quantization), colours and categories back
through trimesh and through a plain reading of the accessors."""

from __future__ import annotations

import io
import json
import struct

import numpy as np
import pytest
import trimesh

from pointcloud import CATEGORY_NAMES, CATEGORY_PALETTE, PointCloud, decode, encode
from pointcloud.descriptors import describe
from pointcloud.glb import (
    POSITION_ERROR_M,
    QUANTIZATION_EXTENSION,
    SEGMENT_ATTRIBUTE,
    quantized_error_bound,
    to_glb,
)
from tests.node import validate_gltf


def stored_cloud(count: int, seed: int = 0, spread: float = 5.0,
                 offset: float = 0.0) -> PointCloud:
    """A cloud as the orchestrator stores it: through PCLD, with a camera and descriptors."""
    rng = np.random.default_rng(seed)
    cloud = PointCloud((rng.normal(0, spread, (count, 3)) + offset).astype(np.float32),
                       rng.integers(0, 256, (count, 3), dtype=np.uint8),
                       rng.integers(0, 6, count, dtype=np.uint8))
    camera = {"model": "pinhole", "width": 96, "height": 64, "fx": 80.0, "fy": 80.0, "cx": 48.0,
              "cy": 32.0, "stride": 1}
    extra = {"descriptors": describe(cloud)}
    return decode(encode(cloud, mode="planar", cloud_id="g1", camera=camera, extra_header=extra))


def read_glb(data: bytes) -> tuple[dict, bytes]:
    magic, version, length = struct.unpack_from("<4sII", data)
    assert (magic, version, length) == (b"glTF", 2, len(data))
    json_length, json_type = struct.unpack_from("<I4s", data, 12)
    assert json_type == b"JSON"
    document = json.loads(data[20:20 + json_length])
    rest = data[20 + json_length:]
    if not rest:
        return document, b""
    bin_length, bin_type = struct.unpack_from("<I4s", rest)
    assert bin_type == b"BIN\0" and len(rest) == 8 + bin_length
    return document, rest[8:]


def accessor_array(document: dict, blob: bytes, index: int, dtype: str, width: int) -> np.ndarray:
    accessor = document["accessors"][index]
    view = document["bufferViews"][accessor["bufferView"]]
    itemsize = np.dtype(dtype).itemsize * width
    stride = view.get("byteStride", itemsize)
    raw = np.frombuffer(blob, np.uint8, count=view["byteLength"], offset=view["byteOffset"])
    rows = raw.reshape(accessor["count"], stride)[:, :itemsize]
    return np.ascontiguousarray(rows).view(dtype).reshape(accessor["count"], width)


def quantized_positions(document: dict, blob: bytes) -> np.ndarray:
    """World positions of a quantised GLB: uint16 levels through the node's scale and offset, in
    float32 as a GPU applies them (multiply, then add)."""
    node = document["nodes"][0]
    levels = accessor_array(document, blob, 0, "<u2", 3).astype(np.float32)
    scale, offset = np.float32(node["scale"]), np.float32(node["translation"])
    return levels * scale + offset


def test_the_validator_finds_no_errors(tmp_path) -> None:
    paths = []
    for name, cloud, positions in (
            ("quantized", stored_cloud(5000), "auto"), ("float", stored_cloud(5000), "float"),
            ("one", stored_cloud(1), "auto"), ("one-float", stored_cloud(1), "float"),
            ("flat", stored_cloud(50, spread=0.0, offset=2.0), "quantized"),
            ("empty", stored_cloud(0), "auto")):
        paths.append(tmp_path / f"{name}.glb")
        paths[-1].write_bytes(to_glb(cloud, positions=positions))
    for report in validate_gltf(*paths):
        assert report["errors"] == 0, report
        assert report["warnings"] == 0, report


def test_accessors_hold_the_stored_cloud_exactly() -> None:
    cloud = stored_cloud(3000, seed=1)
    document, blob = read_glb(to_glb(cloud, positions="float"))
    assert "extensionsRequired" not in document and "scale" not in document["nodes"][0]
    primitive = document["meshes"][0]["primitives"][0]
    assert primitive["mode"] == 0  # POINTS
    attributes = primitive["attributes"]
    np.testing.assert_array_equal(
        accessor_array(document, blob, attributes["POSITION"], "<f4", 3), cloud.positions)
    color = document["accessors"][attributes["COLOR_0"]]
    assert color["normalized"] and color["componentType"] == 5121 and color["type"] == "VEC3"
    np.testing.assert_array_equal(
        accessor_array(document, blob, attributes["COLOR_0"], "u1", 3), cloud.colors)
    np.testing.assert_array_equal(
        accessor_array(document, blob, attributes[SEGMENT_ATTRIBUTE], "u1", 1)[:, 0],
        cloud.segments)
    position = document["accessors"][attributes["POSITION"]]
    lo, hi = cloud.bounds()
    assert position["min"] == lo.tolist() and position["max"] == hi.tolist()
    extras = document["scenes"][0]["extras"]
    assert extras["categories"] == list(CATEGORY_NAMES)
    assert extras["palette"] == CATEGORY_PALETTE.tolist()
    assert extras["camera"] == cloud.header["camera"]
    assert extras["descriptors"] == cloud.header["descriptors"]
    assert extras["point_count"] == 3000


@pytest.mark.parametrize("offset", [0.0, -40.0])
def test_quantized_positions_stay_within_the_stated_bound(offset: float) -> None:
    cloud = stored_cloud(4000, seed=6, offset=offset)
    lo, hi = cloud.bounds()
    bound = quantized_error_bound(lo, hi)
    assert bound <= POSITION_ERROR_M  # so "auto" quantises
    document, blob = read_glb(to_glb(cloud))
    assert document["extensionsUsed"] == document["extensionsRequired"] == [QUANTIZATION_EXTENSION]
    position = document["accessors"][0]
    assert (position["componentType"], position.get("normalized", False)) == (5123, False)
    assert document["bufferViews"][0]["byteStride"] == 8 and len(blob) == 16 * cloud.count
    # The levels are PCLD's quantised variant's, so its bound (FORMAT.md) applies as stated.
    pcld = encode(cloud, mode="planar", cloud_id="q", quantized=True)
    header_length = struct.unpack_from("<I", pcld, 8)[0]
    levels = np.frombuffer(pcld, "<u2", count=3 * cloud.count, offset=12 + header_length)
    np.testing.assert_array_equal(accessor_array(document, blob, 0, "<u2", 3).ravel(), levels)
    assert position["min"] == levels.reshape(-1, 3).min(axis=0).tolist()
    assert position["max"] == levels.reshape(-1, 3).max(axis=0).tolist()
    error = np.abs(quantized_positions(document, blob).astype(np.float64) - cloud.positions)
    assert error.max() <= bound
    # Colours and categories are untouched.
    attributes = document["meshes"][0]["primitives"][0]["attributes"]
    np.testing.assert_array_equal(
        accessor_array(document, blob, attributes["COLOR_0"], "u1", 3), cloud.colors)
    np.testing.assert_array_equal(
        accessor_array(document, blob, attributes[SEGMENT_ATTRIBUTE], "u1", 1)[:, 0],
        cloud.segments)


def test_auto_keeps_float_when_the_bound_is_too_coarse() -> None:
    # 400 m across on one axis: half a step is 3 mm, over the stated 1 mm.
    cloud = stored_cloud(1000, seed=7, spread=80.0)
    assert quantized_error_bound(*cloud.bounds()) > POSITION_ERROR_M
    document, _blob = read_glb(to_glb(cloud))
    assert document["accessors"][0]["componentType"] == 5126  # FLOAT
    document, _blob = read_glb(to_glb(cloud, positions="quantized"))
    assert document["extensionsRequired"] == [QUANTIZATION_EXTENSION]


def test_an_axis_without_extent_keeps_an_invertible_transform() -> None:
    cloud = stored_cloud(20, spread=0.0, offset=2.0)
    document, blob = read_glb(to_glb(cloud, positions="quantized"))
    assert document["nodes"][0]["scale"] == [1.0, 1.0, 1.0]
    np.testing.assert_array_equal(quantized_positions(document, blob), cloud.positions)


@pytest.mark.parametrize("positions", ["float", "quantized"])
def test_trimesh_loads_positions_and_colours(positions: str) -> None:
    cloud = stored_cloud(2000, seed=2)
    data = to_glb(cloud, positions=positions)
    scene = trimesh.load(io.BytesIO(data), file_type="glb")
    (points,) = scene.geometry.values()
    assert isinstance(points, trimesh.PointCloud)
    np.testing.assert_array_equal(np.asarray(points.colors)[:, :3], cloud.colors)
    # trimesh keeps the node's transform in its scene graph; dump() applies it.
    (placed,) = scene.dump()
    if positions == "float":
        np.testing.assert_array_equal(np.asarray(placed.vertices, np.float32), cloud.positions)
    else:
        error = np.abs(np.asarray(placed.vertices) - cloud.positions)
        assert error.max() <= quantized_error_bound(*cloud.bounds())


def test_an_empty_cloud_is_an_empty_scene() -> None:
    document, blob = read_glb(to_glb(stored_cloud(0)))
    assert blob == b"" and "meshes" not in document and "buffers" not in document
    assert document["scenes"][0]["extras"]["point_count"] == 0
    assert trimesh.load(io.BytesIO(to_glb(stored_cloud(0))), file_type="glb").is_empty


@pytest.mark.parametrize("count", [1, 7])
def test_small_clouds_keep_the_glb_aligned(count: int) -> None:
    for positions, size in (("float", 20), ("quantized", 16)):
        data = to_glb(stored_cloud(count), positions=positions)
        _document, blob = read_glb(data)
        assert len(data) % 4 == 0 and len(blob) == size * count


def grid_cloud(width: int = 64, height: int = 48, *, panorama: bool = False) -> PointCloud:
    """A wall with a box in front of it, packed as the orchestrator packs a photo (or a 2:1
    panorama), edges cleaned: a mesh has two surfaces that must stay apart."""
    from pointcloud import pack_equirect, pack_planar

    rng = np.random.default_rng(3)
    depth = np.full((height, width), 4.0, np.float32)
    depth[height // 4: height // 2, width // 4: width // 2] = 2.0
    rgb = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    categories = np.full((height, width), 5, np.uint8)
    categories[height // 4: height // 2, width // 4: width // 2] = 0
    if panorama:
        return decode(pack_equirect(depth, rgb, categories, cloud_id="p", depth_is_metric=True,
                                    edge_rtol=0.1))
    return decode(pack_planar(depth, rgb, categories, cloud_id="m", depth_is_metric=True,
                              focal_length_px=60.0, edge_rtol=0.1))


def test_meshes_pass_the_validator_without_a_warning(tmp_path) -> None:
    paths = []
    for name, cloud, positions in (
            ("mesh", grid_cloud(), "auto"), ("mesh-float", grid_cloud(), "float"),
            ("mesh-uint32", grid_cloud(320, 240), "auto"),
            ("mesh-panorama", grid_cloud(128, 64, panorama=True), "auto")):
        paths.append(tmp_path / f"{name}.glb")
        paths[-1].write_bytes(to_glb(cloud, positions=positions, geometry="mesh"))
    for report in validate_gltf(*paths):
        assert report["errors"] == 0, report
        assert report["warnings"] == 0, report


@pytest.mark.parametrize("positions", ["float", "quantized"])
def test_a_mesh_glb_holds_the_mesh(positions) -> None:
    from pointcloud import mesh_from_cloud

    cloud = grid_cloud(320, 240)
    mesh = mesh_from_cloud(cloud)
    assert mesh.vertex_count > 65535  # uint32 indices
    document, blob = read_glb(to_glb(cloud, positions=positions, geometry="mesh"))
    (primitive,) = document["meshes"][0]["primitives"]
    assert primitive["mode"] == 4  # TRIANGLES
    attributes = primitive["attributes"]
    indices = document["accessors"][primitive["indices"]]
    assert indices["componentType"] == 5125  # UNSIGNED_INT
    np.testing.assert_array_equal(
        accessor_array(document, blob, primitive["indices"], "<u4", 1).reshape(-1, 3),
        mesh.indices)
    normals = accessor_array(document, blob, attributes["NORMAL"], "<f4", 3)
    if positions == "float":
        np.testing.assert_array_equal(
            accessor_array(document, blob, attributes["POSITION"], "<f4", 3), mesh.positions)
        np.testing.assert_allclose(normals, mesh.normals, atol=1e-6)
    else:
        error = np.abs(quantized_positions(document, blob) - mesh.positions).max()
        assert error <= quantized_error_bound(*cloud.bounds())
        # A loader turns normals by the node's inverse transpose: they come out as the mesh's.
        turned = normals / np.float32(document["nodes"][0]["scale"])
        turned /= np.linalg.norm(turned, axis=1, keepdims=True)
        np.testing.assert_allclose(turned, mesh.normals, atol=1e-5)
    np.testing.assert_array_equal(
        accessor_array(document, blob, attributes["COLOR_0"], "u1", 3), mesh.colors)
    np.testing.assert_array_equal(
        accessor_array(document, blob, attributes[SEGMENT_ATTRIBUTE], "u1", 1)[:, 0],
        mesh.categories)
    material = document["materials"][primitive["material"]]
    assert "KHR_materials_unlit" in material["extensions"]
    assert material["pbrMetallicRoughness"]["metallicFactor"] == 0
    extras = document["scenes"][0]["extras"]
    assert extras["geometry"] == "mesh" and extras["triangle_count"] == mesh.triangle_count


def test_trimesh_reads_a_mesh_glb_as_the_mesh() -> None:
    from pointcloud import mesh_from_cloud

    cloud = grid_cloud()
    mesh = mesh_from_cloud(cloud)
    loaded = trimesh.load(io.BytesIO(to_glb(cloud, geometry="mesh")), file_type="glb",
                          force="mesh")
    assert isinstance(loaded, trimesh.Trimesh)
    assert (len(loaded.vertices), len(loaded.faces)) == (mesh.vertex_count, mesh.triangle_count)
    # The box and the wall are separate surfaces (no triangle across the jump).
    assert len(loaded.split(only_watertight=False)) >= 2


def test_an_unknown_geometry_is_refused() -> None:
    with pytest.raises(ValueError, match="geometry"):
        to_glb(grid_cloud(), geometry="voxels")

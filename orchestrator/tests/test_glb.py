"""scene.glb: 0 errors from the Khronos validator, the stored cloud's exact positions, colours
and categories back through trimesh and through a plain reading of the accessors."""

from __future__ import annotations

import io
import json
import struct

import numpy as np
import pytest
import trimesh

from orchestrator.glb import SEGMENT_ATTRIBUTE, to_glb
from pointcloud import CATEGORY_NAMES, CATEGORY_PALETTE, PointCloud, decode, encode
from pointcloud.descriptors import describe
from tests.node import validate_gltf


def stored_cloud(count: int, seed: int = 0) -> PointCloud:
    """A cloud as the orchestrator stores it: through PCLD, with a camera and descriptors."""
    rng = np.random.default_rng(seed)
    cloud = PointCloud(rng.normal(0, 5, (count, 3)).astype(np.float32),
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


def test_the_validator_finds_no_errors(tmp_path) -> None:
    paths = []
    for name, cloud in (("points", stored_cloud(5000)), ("one", stored_cloud(1)),
                        ("empty", stored_cloud(0))):
        paths.append(tmp_path / f"{name}.glb")
        paths[-1].write_bytes(to_glb(cloud))
    for report in validate_gltf(*paths):
        assert report["errors"] == 0, report
        assert report["warnings"] == 0, report


def test_accessors_hold_the_stored_cloud_exactly() -> None:
    cloud = stored_cloud(3000, seed=1)
    document, blob = read_glb(to_glb(cloud))
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


def test_trimesh_loads_positions_and_colours() -> None:
    cloud = stored_cloud(2000, seed=2)
    scene = trimesh.load(io.BytesIO(to_glb(cloud)), file_type="glb")
    (points,) = scene.geometry.values()
    assert isinstance(points, trimesh.PointCloud)
    np.testing.assert_array_equal(np.asarray(points.vertices, np.float32), cloud.positions)
    np.testing.assert_array_equal(np.asarray(points.colors)[:, :3], cloud.colors)


def test_an_empty_cloud_is_an_empty_scene() -> None:
    document, blob = read_glb(to_glb(stored_cloud(0)))
    assert blob == b"" and "meshes" not in document and "buffers" not in document
    assert document["scenes"][0]["extras"]["point_count"] == 0
    assert trimesh.load(io.BytesIO(to_glb(stored_cloud(0))), file_type="glb").is_empty


@pytest.mark.parametrize("count", [1, 7])
def test_small_clouds_keep_the_glb_aligned(count: int) -> None:
    data = to_glb(stored_cloud(count))
    _document, blob = read_glb(data)
    assert len(data) % 4 == 0 and len(blob) == 20 * count

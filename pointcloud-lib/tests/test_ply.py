"""PLY export, read back by readers this project did not write (plyfile, trimesh; Open3D if
installed): points, and a mesh's vertices, normals and faces."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import trimesh
from plyfile import PlyData

from pointcloud import CATEGORY_NAMES, DEFAULT_EDGE_RTOL, mesh_planar, to_ply


def test_plyfile_reads_every_property(make_cloud) -> None:
    cloud = make_cloud(500, seed=8)
    ply = PlyData.read(io.BytesIO(to_ply(cloud)))

    assert ply.text is False and ply.byte_order == "<"
    vertex = ply["vertex"]
    assert [p.name for p in vertex.properties] == ["x", "y", "z", "red", "green", "blue", "segment"]
    assert vertex.count == 500
    positions = np.stack([vertex["x"], vertex["y"], vertex["z"]], axis=1)
    assert np.array_equal(positions, cloud.positions)
    assert np.array_equal(
        np.stack([vertex["red"], vertex["green"], vertex["blue"]], axis=1), cloud.colors
    )
    assert np.array_equal(vertex["segment"], cloud.segments)
    assert any(all(name in c for name in CATEGORY_NAMES) for c in ply.comments)


def test_an_empty_cloud_is_a_valid_ply(empty_cloud) -> None:
    assert PlyData.read(io.BytesIO(to_ply(empty_cloud)))["vertex"].count == 0


def test_open3d_reads_points_and_colours(make_cloud, tmp_path: Path) -> None:
    o3d = pytest.importorskip("open3d", reason="open3d is a bench-only dependency")
    cloud = make_cloud(300, seed=9)
    path = tmp_path / "cloud.ply"
    path.write_bytes(to_ply(cloud))
    read = o3d.io.read_point_cloud(str(path))
    assert np.allclose(np.asarray(read.points), cloud.positions)
    assert np.allclose(np.asarray(read.colors) * 255, cloud.colors, atol=0.5)


def test_the_mesh_ply_reads_back_in_plyfile_and_trimesh():
    rng = np.random.default_rng(4)
    v, u = np.mgrid[0:40, 0:64].astype(np.float32)
    depth = 3.0 + 0.02 * u + 0.01 * v
    depth[:, 32:] += 5.0  # two surfaces: the face list must not join them
    rgb = rng.integers(0, 256, (40, 64, 3), dtype=np.uint8)
    categories = rng.integers(0, 6, (40, 64), dtype=np.uint8)
    mesh = mesh_planar(depth, rgb, categories, depth_is_metric=True, edge_rtol=DEFAULT_EDGE_RTOL)
    data = to_ply(mesh)
    ply = PlyData.read(io.BytesIO(data))
    vertex, face = ply["vertex"], ply["face"]
    assert vertex.count == mesh.vertex_count and face.count == mesh.triangle_count
    np.testing.assert_array_equal(
        np.stack([vertex["x"], vertex["y"], vertex["z"]], 1), mesh.positions)
    np.testing.assert_array_equal(
        np.stack([vertex["nx"], vertex["ny"], vertex["nz"]], 1), mesh.normals)
    np.testing.assert_array_equal(vertex["segment"], mesh.categories)
    np.testing.assert_array_equal(np.stack(face["vertex_indices"]), mesh.indices)
    loaded = trimesh.load(io.BytesIO(data), file_type="ply", process=False)
    assert isinstance(loaded, trimesh.Trimesh)
    assert len(loaded.vertices) == mesh.vertex_count and len(loaded.faces) == mesh.triangle_count
    np.testing.assert_array_equal(loaded.faces, mesh.indices)
    np.testing.assert_array_equal(loaded.visual.vertex_colors[:, :3], mesh.colors)

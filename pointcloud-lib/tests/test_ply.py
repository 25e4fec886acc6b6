"""PLY export, read back by readers this project did not write (plyfile; Open3D if installed)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from plyfile import PlyData

from pointcloud import CATEGORY_NAMES, to_ply


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

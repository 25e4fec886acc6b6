"""The .splat layout: 32 bytes a point, decoded field by field; discs facing the viewer, sized by
the pixel footprint."""

from __future__ import annotations

import numpy as np
import pytest

from pointcloud import PointCloud
from pointcloud.splat import FLATNESS, FOOTPRINT_SIGMAS, RECORD, decode, to_splat


def rotation_matrix(wxyz: np.ndarray) -> np.ndarray:
    w, x, y, z = wxyz / np.linalg.norm(wxyz)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ])


def test_layout_decodes_field_by_field(make_cloud) -> None:
    cloud = make_cloud(500, seed=3)
    data = to_splat(cloud, angular_step=0.002)
    assert len(data) == 32 * cloud.count
    # Byte offsets as the layout states them, independently of the RECORD dtype.
    raw = np.frombuffer(data, np.uint8).reshape(-1, 32)
    positions = raw[:, 0:12].copy().view("<f4")
    scales = raw[:, 12:24].copy().view("<f4")
    np.testing.assert_array_equal(positions, cloud.positions)
    np.testing.assert_array_equal(raw[:, 24:27], cloud.colors)
    assert (raw[:, 27] == 255).all()
    distance = np.linalg.norm(cloud.positions.astype(np.float64), axis=1)
    np.testing.assert_allclose(scales[:, 0], distance * 0.002 * FOOTPRINT_SIGMAS, rtol=1e-5)
    np.testing.assert_allclose(scales[:, 1], scales[:, 0])
    np.testing.assert_allclose(scales[:, 2], scales[:, 0] * FLATNESS, rtol=1e-6)
    assert decode(data).dtype == RECORD


def test_discs_face_the_viewer(make_cloud) -> None:
    cloud = make_cloud(300, seed=4)
    records = decode(to_splat(cloud, angular_step=0.01))
    quaternions = (records["rotation"].astype(np.float64) - 128) / 128  # the renderers' decoding
    for position, wxyz in zip(cloud.positions, quaternions, strict=True):
        local_z = rotation_matrix(wxyz)[:, 2]
        toward_viewer = -position / np.linalg.norm(position)
        # One byte per component: a few degrees at most.
        assert local_z @ toward_viewer > np.cos(np.radians(3))


def test_points_on_the_axes_and_at_the_origin() -> None:
    positions = np.array([[0, 0, -2], [0, 0, 2], [3, 0, 0], [0, 0, 0]], np.float32)
    cloud = PointCloud(positions, np.zeros((4, 3), np.uint8), np.zeros(4, np.uint8))
    records = decode(to_splat(cloud, angular_step=0.01))
    quaternions = (records["rotation"].astype(np.float64) - 128) / 128
    for position, wxyz in zip(positions[:3], quaternions[:3], strict=True):
        toward_viewer = -position / np.linalg.norm(position)
        np.testing.assert_allclose(rotation_matrix(wxyz)[:, 2], toward_viewer, atol=0.02)
    assert np.isfinite(records["scale"]).all() and (records["scale"][3] == 0).all()


def test_opacity_and_empty_cloud(empty_cloud, make_cloud) -> None:
    assert to_splat(empty_cloud, angular_step=0.01) == b""
    cloud = make_cloud(10)
    alpha = np.arange(10, dtype=np.uint8) * 20
    assert (decode(to_splat(cloud, 0.01, opacity=alpha))["rgba"][:, 3] == alpha).all()
    with pytest.raises(ValueError, match="angular_step"):
        to_splat(cloud, 0.0)


def test_gaussian_ply_holds_the_same_gaussians(make_cloud, empty_cloud) -> None:
    import io

    from plyfile import PlyData

    from pointcloud.splat import SH_C0, encode_rotation, to_gaussian_ply

    cloud = make_cloud(400, seed=6)
    data = to_gaussian_ply(cloud, angular_step=0.004)
    vertex = PlyData.read(io.BytesIO(data))["vertex"]
    assert vertex.count == cloud.count
    splat = decode(to_splat(cloud, angular_step=0.004))
    positions = np.stack([vertex["x"], vertex["y"], vertex["z"]], axis=1)
    np.testing.assert_array_equal(positions, cloud.positions)
    colors = np.stack([vertex[f"f_dc_{i}"] for i in range(3)], axis=1) * SH_C0 + 0.5
    np.testing.assert_allclose(colors * 255, cloud.colors, atol=1e-3)
    alpha = 1 / (1 + np.exp(-vertex["opacity"]))
    assert (np.rint(alpha * 255) == 255).all()
    scales = np.exp(np.stack([vertex[f"scale_{i}"] for i in range(3)], axis=1))
    np.testing.assert_allclose(scales, splat["scale"], rtol=1e-5)
    rotations = np.stack([vertex[f"rot_{i}"] for i in range(4)], axis=1)
    np.testing.assert_allclose(np.linalg.norm(rotations, axis=1), 1, rtol=1e-6)
    np.testing.assert_array_equal(encode_rotation(rotations), splat["rotation"])
    assert PlyData.read(io.BytesIO(to_gaussian_ply(empty_cloud, 0.01)))["vertex"].count == 0

"""The .splat layout: 32 bytes a point, decoded field by field; discs facing the viewer, sized by
the pixel footprint; opacity lowered beside dropped depth edges (synthetic depth steps)."""

from __future__ import annotations

import numpy as np
import pytest

from pointcloud import PointCloud, pack_equirect, pack_planar
from pointcloud import decode as decode_pcld
from pointcloud.splat import (
    EDGE_OPACITY_FLOOR,
    EDGE_REACH,
    EDGE_SOFT,
    FLATNESS,
    FOOTPRINT_SIGMAS,
    RECORD,
    _grid_cells,
    decode,
    edge_opacity,
    to_splat,
)


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


def step_scene(blend: bool, *, width: int = 60, height: int = 40) -> np.ndarray:
    """A wall 2 m away on the left, 4 m on the right; with ``blend``, one column between them at
    3 m (the flying pixels a depth model leaves across the jump)."""
    depth = np.full((height, width), 4.0, np.float32)
    depth[:, : width // 2] = 2.0
    if blend:
        depth[:, width // 2] = 3.0
    return depth


def opacity_grid(cloud: PointCloud, alpha: np.ndarray) -> np.ndarray:
    """The opacity of each point on its cell of the sampled grid; -1 where no point is."""
    index, shape, _depth, _wrap = _grid_cells(cloud)
    grid = np.full(shape[0] * shape[1], -1)
    grid[index] = alpha
    return grid.reshape(shape)


@pytest.mark.parametrize("blend", [False, True])
def test_opacity_falls_beside_a_dropped_depth_step(blend: bool) -> None:
    depth = step_scene(blend)
    height, width = depth.shape
    rgb = np.zeros((height, width, 3), np.uint8)
    cloud = decode_pcld(pack_planar(depth, rgb, depth_is_metric=True, fov_deg=60.0,
                                    edge_rtol=0.1, cloud_id="step"))
    grid = opacity_grid(cloud, edge_opacity(cloud, 0.1))
    dropped = np.flatnonzero(grid[0] < 0)
    # The mask drops the cells whose 3 x 3 neighbourhood spans the jump: 2 or 3 columns.
    assert dropped.tolist() == list(range(width // 2 - 1, width // 2 + 1 + blend))
    # The kept columns that have the far side of the jump within EDGE_REACH (across the dropped
    # band: the first kept column beside it, and the second too when the band is only 2 wide)
    # fall to the floor; every other point stays opaque.
    first_left, first_right = dropped[0] - 1, dropped[-1] + 1
    beside = [c for c in range(width) if c not in dropped and (
        (c < dropped[0] and first_right - c <= EDGE_REACH)
        or (c > dropped[-1] and c - first_left <= EDGE_REACH))]
    assert beside == ([first_left, first_right] if blend else
                      [first_left - 1, first_left, first_right, first_right + 1])
    floor = round(EDGE_OPACITY_FLOOR * 255)
    assert (grid[:, beside] == floor).all()
    others = np.ones(width, bool)
    others[dropped] = others[beside] = False
    assert (grid[:, others] == 255).all()
    splat = decode(to_splat(cloud, 0.01, opacity=edge_opacity(cloud, 0.1)))
    assert sorted(set(splat["rgba"][:, 3].tolist())) == [floor, 255]


def test_holes_without_a_depth_step_cost_no_opacity() -> None:
    # A flat wall thinned by max_points: holes everywhere, but no jump across any of them.
    depth = np.full((40, 60), 3.0, np.float32)
    cloud = decode_pcld(pack_planar(depth, np.zeros((40, 60, 3), np.uint8), depth_is_metric=True,
                                    edge_rtol=0.1, max_points=900, cloud_id="thin"))
    assert cloud.count <= 900
    assert (edge_opacity(cloud, 0.1) == 255).all()


def test_a_span_near_the_threshold_lowers_opacity_gradually() -> None:
    # Depth grows by a constant factor g per column: the 3 x 3 span over the depth is
    # g - 1/g, here 0.075, kept (below rtol 0.1) but past EDGE_SOFT x rtol.
    growth = np.exp(np.arcsinh(0.075 / 2))
    depth = np.tile(2.0 * growth ** np.arange(30), (20, 1)).astype(np.float32)
    cloud = decode_pcld(pack_planar(depth, np.zeros((20, 30, 3), np.uint8), depth_is_metric=True,
                                    edge_rtol=0.1, cloud_id="slope"))
    assert cloud.count == depth.size  # nothing dropped
    grid = opacity_grid(cloud, edge_opacity(cloud, 0.1))
    fall = (0.075 - EDGE_SOFT * 0.1) / (0.1 - EDGE_SOFT * 0.1)
    expected = round(255 * (1 - (1 - EDGE_OPACITY_FLOOR) * fall))
    # Inside (the window not clipped by the image's border, where the span is narrower).
    np.testing.assert_allclose(grid[:, 5:-5], expected, atol=2)


def test_a_panorama_sees_across_its_seam() -> None:
    # The jump sits at the seam: the columns on either side of it are neighbours.
    depth = np.full((32, 64), 2.0, np.float32)
    depth[:, -3:] = 4.0
    cloud = decode_pcld(pack_equirect(depth, np.zeros((32, 64, 3), np.uint8),
                                      depth_is_metric=True, edge_rtol=0.1, cloud_id="pano"))
    grid = opacity_grid(cloud, edge_opacity(cloud, 0.1))
    dropped = np.flatnonzero(grid[16] < 0).tolist()
    # Both sides of both jumps (61 | 60 and, across the seam, 63 | 0).
    assert dropped == [0, 60, 61, 63]
    # Column 1 sees column 62 (4 m) only through the seam.
    assert grid[16, 1] < 255 and grid[16, 59] < 255 and grid[16, 10] == 255


def test_no_camera_no_edge_opacity(make_cloud) -> None:
    assert edge_opacity(make_cloud(10), 0.1) is None
    # Points that do not fit the header's camera (two on one cell): no opacity either.
    cloud = decode_pcld(pack_planar(step_scene(False), np.zeros((40, 60, 3), np.uint8),
                                    depth_is_metric=True, cloud_id="twice"))
    twice = PointCloud(np.concatenate([cloud.positions, cloud.positions[:1]]),
                       np.concatenate([cloud.colors, cloud.colors[:1]]),
                       np.concatenate([cloud.segments, cloud.segments[:1]]), header=cloud.header)
    assert edge_opacity(twice, 0.1) is None

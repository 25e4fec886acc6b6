"""Projection geometry: known pixels land on known points, the axis conventions, the sphere, the
normalized-depth mapping, dropped and thinned pixels, exact bounds, and input checks."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from pointcloud import (
    DEFAULT_FOV_DEG,
    PointCloud,
    normalized_to_metres,
    project_equirect,
    project_planar,
)
from pointcloud.cloud import _extremes


def flat_inputs(height: int, width: int, depth: float = 2.0, seed: int = 0):
    rng = np.random.default_rng(seed)
    return (
        np.full((height, width), depth, np.float32),
        rng.integers(0, 256, (height, width, 3), dtype=np.uint8),
        rng.integers(0, 6, (height, width), dtype=np.uint8),
    )


def at(cloud: PointCloud, width: int, u: int, v: int) -> np.ndarray:
    """The point of pixel (u, v) when every pixel was kept (raster order)."""
    return cloud.positions[v * width + u]


def assert_exact_bounds(cloud: PointCloud) -> None:
    """The bounds the projection worked out equal a plain reduction over the positions."""
    lo, hi = cloud.bounds()
    plain_lo, plain_hi = _extremes(np.array(cloud.positions))
    assert np.array_equal(lo, plain_lo) and np.array_equal(hi, plain_hi)
    assert np.array_equal(plain_lo, cloud.positions.min(axis=0))
    assert np.array_equal(plain_hi, cloud.positions.max(axis=0))


# --- pinhole --------------------------------------------------------------------------------


def test_a_known_pixel_lands_on_the_known_point() -> None:
    depth, rgb, categories = flat_inputs(4, 6)
    depth[1, 5] = 3.0
    cloud = project_planar(
        depth,
        rgb,
        categories,
        depth_is_metric=True,
        focal_length_px=(2.0, 4.0),
        principal_point=(2.0, 1.5),
    )
    # x = (u - cx) z / fx, y = -(v - cy) z / fy, z = -depth
    assert np.allclose(at(cloud, 6, 5, 1), [(5 - 2.0) * 3 / 2, -(1 - 1.5) * 3 / 4, -3.0], rtol=1e-6)
    assert np.array_equal(cloud.colors[1 * 6 + 5], rgb[1, 5])
    assert cloud.segments[1 * 6 + 5] == categories[1, 5]


def test_axis_conventions_follow_three_js() -> None:
    depth, rgb, _ = flat_inputs(5, 5)
    cloud = project_planar(depth, rgb, depth_is_metric=True, focal_length_px=5.0)
    centre = at(cloud, 5, 2, 2)
    assert np.allclose(centre, [0, 0, -2])  # default principal point: the image centre
    assert (cloud.positions[:, 2] < 0).all()  # in front of the camera is -Z
    assert at(cloud, 5, 4, 2)[0] > 0  # right of the image is +X
    assert at(cloud, 5, 2, 0)[1] > 0  # top of the image is +Y


def test_the_field_of_view_spans_the_image_edge_to_edge() -> None:
    width = 100
    depth, rgb, _ = flat_inputs(10, width, depth=1.0)
    cloud = project_planar(depth, rgb, depth_is_metric=True, fov_deg=90.0)
    focal = (width / 2) / math.tan(math.radians(45))
    # The last pixel centre is half a pixel inside the edge, which sits at x/z = tan(45°) = 1.
    assert at(cloud, width, width - 1, 0)[0] == pytest.approx((width - 1 - (width - 1) / 2) / focal)
    assert at(cloud, width, width - 1, 0)[0] + 0.5 / focal == pytest.approx(1.0)


def test_focal_length_wins_over_fov_and_the_default_fov_applies() -> None:
    depth, rgb, _ = flat_inputs(8, 8)
    both = project_planar(depth, rgb, depth_is_metric=True, focal_length_px=3.0, fov_deg=10)
    focal = project_planar(depth, rgb, depth_is_metric=True, focal_length_px=3.0)
    assert np.array_equal(both.positions, focal.positions)
    default = project_planar(depth, rgb, depth_is_metric=True)
    explicit = project_planar(depth, rgb, depth_is_metric=True, fov_deg=DEFAULT_FOV_DEG)
    assert np.array_equal(default.positions, explicit.positions)


def test_stride_keeps_the_full_resolution_geometry() -> None:
    rng = np.random.default_rng(1)
    depth = rng.uniform(1, 5, (9, 13)).astype(np.float32)
    rgb = rng.integers(0, 256, (9, 13, 3), dtype=np.uint8)
    full = project_planar(depth, rgb, depth_is_metric=True, focal_length_px=7.0)
    strided = project_planar(depth, rgb, depth_is_metric=True, focal_length_px=7.0, stride=4)
    rows, cols = np.meshgrid(np.arange(0, 9, 4), np.arange(0, 13, 4), indexing="ij")
    picked = (rows * 13 + cols).reshape(-1)
    assert strided.count == 3 * 4
    assert np.array_equal(strided.positions, full.positions[picked])
    assert np.array_equal(strided.colors, full.colors[picked])


def test_ground_truth_depth_matches_an_independent_pinhole(shared_dir: Path) -> None:
    """Real KITTI and NYU depth with their own intrinsics, against the textbook formula (and
    Open3D's create_from_rgbd_image where it is installed)."""
    image = pytest.importorskip("PIL.Image")
    for dataset in ("kitti", "nyu"):
        folder = shared_dir / "depth-gt" / dataset
        annotations = json.loads((folder / "metric3d_test_annotations.json").read_text())
        sample = annotations["files"][0]
        fx, fy, cx, cy = sample["cam_in"]
        stem = Path(sample["rgb"]).stem.removeprefix("rgb_")
        raw = np.asarray(image.open(folder / f"{stem}_depth.png"))
        depth = (raw / sample["depth_scale"]).astype(np.float32)  # 0 = no ground truth
        rgb_path = next(folder.glob(f"{stem}_rgb.*"))
        rgb = np.asarray(image.open(rgb_path).convert("RGB"))

        cloud = project_planar(
            depth, rgb, depth_is_metric=True, focal_length_px=(fx, fy), principal_point=(cx, cy)
        )

        v, u = np.nonzero(raw > 0)  # raster order, like the cloud
        z = depth[v, u].astype(np.float64)
        expected = np.stack([(u - cx) * z / fx, -(v - cy) * z / fy, -z], axis=1)
        assert cloud.count == len(z) > 0.1 * raw.size
        assert np.allclose(cloud.positions, expected, rtol=1e-5, atol=1e-5)
        assert np.array_equal(cloud.colors, rgb[v, u])
        assert_exact_bounds(cloud)
        _compare_with_open3d(cloud, depth, rgb, (fx, fy, cx, cy))


def _compare_with_open3d(cloud, depth, rgb, intrinsics) -> None:
    try:
        import open3d as o3d
    except ImportError:
        return  # the bench environment has it; the textbook formula above always runs
    fx, fy, cx, cy = intrinsics
    height, width = depth.shape
    rgbd = o3d.geometry.RGBDImage.create_from_color_and_depth(
        o3d.geometry.Image(np.ascontiguousarray(rgb)),
        o3d.geometry.Image(depth),
        depth_scale=1.0,
        depth_trunc=1e6,
        convert_rgb_to_intensity=False,
    )
    intrinsic = o3d.camera.PinholeCameraIntrinsic(width, height, fx, fy, cx, cy)
    points = np.asarray(o3d.geometry.PointCloud.create_from_rgbd_image(rgbd, intrinsic).points)
    # Open3D's camera looks down +Z with +Y down; ours looks down -Z with +Y up.
    assert np.allclose(cloud.positions, points * [1, -1, -1], rtol=1e-5, atol=1e-5)


# --- panorama -------------------------------------------------------------------------------


def test_sphere_radius_equals_depth() -> None:
    rng = np.random.default_rng(2)
    depth = rng.uniform(0.5, 30, (16, 32)).astype(np.float32)
    rgb = rng.integers(0, 256, (16, 32, 3), dtype=np.uint8)
    cloud = project_equirect(depth, rgb, depth_is_metric=True)
    radius = np.linalg.norm(cloud.positions.astype(np.float64), axis=1)
    assert np.allclose(radius, depth.reshape(-1), rtol=1e-6)


def test_panorama_orientation() -> None:
    height, width = 8, 16
    depth, rgb, _ = flat_inputs(height, width, depth=1.0)
    cloud = project_equirect(depth, rgb, depth_is_metric=True)

    def direction(u: int, v: int) -> np.ndarray:
        return at(cloud, width, u, v)

    # The two columns either side of the centre line straddle -Z, symmetric in X.
    left, right = direction(width // 2 - 1, height // 2), direction(width // 2, height // 2)
    assert left[2] < -0.9 and right[2] < -0.9
    assert left[0] == pytest.approx(-right[0]) and right[0] > 0  # right of centre is +X
    assert direction(width // 2, 0)[1] > 0.9  # the top row looks up
    assert direction(width // 2, height - 1)[1] < -0.9
    # A quarter turn right of the centre faces +X; the edges face +Z, behind the viewer.
    assert direction(3 * width // 4, height // 2)[0] > 0.9
    assert direction(0, height // 2)[2] > 0.9 and direction(width - 1, height // 2)[2] > 0.9


def test_wrap_around_columns_meet_behind_the_viewer() -> None:
    height, width = 8, 64
    depth, rgb, _ = flat_inputs(height, width, depth=1.0)
    cloud = project_equirect(depth, rgb, depth_is_metric=True)
    row = height // 2
    first, last, second = (at(cloud, width, u, row) for u in (0, width - 1, 1))

    def angle(a: np.ndarray, b: np.ndarray) -> float:
        return math.acos(np.clip(np.dot(a, b) / np.linalg.norm(a) / np.linalg.norm(b), -1, 1))

    # The seam is no wider than any other pair of neighbouring columns, and it sits on +Z.
    assert angle(first, last) == pytest.approx(angle(first, second), rel=1e-4)
    seam = (first + last) / 2
    assert seam[0] == pytest.approx(0, abs=1e-6) and seam[2] > 0


def test_panorama_bounds_are_exact_with_stride_and_normalized_depth() -> None:
    rng = np.random.default_rng(3)
    depth = rng.uniform(0.05, 1, (64, 128)).astype(np.float32)
    rgb = rng.integers(0, 256, (64, 128, 3), dtype=np.uint8)
    for stride in (1, 3):
        assert_exact_bounds(project_equirect(depth, rgb, stride=stride, near_m=0.5, far_m=40))
        assert_exact_bounds(project_planar(depth, rgb, stride=stride, near_m=0.5, far_m=40))


def test_block_boundaries_do_not_show(monkeypatch: pytest.MonkeyPatch) -> None:
    """The dense path works through blocks of rows; one row a block gives the same points and
    the same exact bounds as one block for the whole image."""
    from pointcloud import projection

    rng = np.random.default_rng(4)
    depth = rng.uniform(0.05, 1, (40, 50)).astype(np.float32)
    rgb = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
    whole = [project(depth, rgb, stride=2) for project in (project_planar, project_equirect)]
    monkeypatch.setattr(projection, "_BLOCK_PIXELS", 1)
    rows = [project(depth, rgb, stride=2) for project in (project_planar, project_equirect)]
    for one, other in zip(whole, rows, strict=True):
        assert np.array_equal(one.positions, other.positions)
        assert [b.tolist() for b in one.bounds()] == [b.tolist() for b in other.bounds()]
        assert_exact_bounds(other)


# --- depth handling -------------------------------------------------------------------------


def test_normalized_depth_interpolates_inverse_depth() -> None:
    d = np.array([1.0, 0.5, 1e-6, 0.25], np.float32)
    z = normalized_to_metres(d, near_m=1.0, far_m=10.0)
    expected = 1 / (1 / 10 + d.astype(np.float64) * (1 / 1.0 - 1 / 10))
    assert np.allclose(z, expected, rtol=1e-6)
    assert z[0] == pytest.approx(1.0) and z[2] == pytest.approx(10.0, rel=1e-4)

    depth, rgb, _ = flat_inputs(3, 3, depth=0.5)
    cloud = project_planar(depth, rgb, near_m=1.0, far_m=10.0)
    assert np.allclose(-cloud.positions[:, 2], 1 / (0.1 + 0.5 * 0.9), rtol=1e-6)


@pytest.mark.parametrize("project", [project_planar, project_equirect])
@pytest.mark.parametrize("metric", [True, False])
def test_invalid_depth_is_dropped(project, metric: bool) -> None:
    depth, rgb, categories = flat_inputs(4, 8, depth=0.7)
    bad = [(0, 0, np.nan), (1, 3, np.inf), (2, 5, -np.inf), (3, 1, -2.0)]
    if metric:
        bad.append((3, 7, 0.0))  # zero metres is no depth; normalized 0 is the far plane
    for v, u, value in bad:
        depth[v, u] = value
    cloud = project(depth, rgb, categories, depth_is_metric=metric)

    keep = np.ones((4, 8), bool)
    for v, u, _ in bad:
        keep[v, u] = False
    assert cloud.count == keep.sum()
    assert np.isfinite(cloud.positions).all()
    assert np.array_equal(cloud.colors, rgb[keep])
    assert np.array_equal(cloud.segments, categories[keep])
    # The sparse path computes the surviving points exactly as the dense path does.
    dense = project(np.full((4, 8), 0.7, np.float32), rgb, categories, depth_is_metric=metric)
    assert np.array_equal(cloud.positions, dense.positions[keep.reshape(-1)])
    assert_exact_bounds(cloud)


@pytest.mark.parametrize("project", [project_planar, project_equirect])
def test_normalized_zero_lands_on_the_far_plane(project) -> None:
    # Depth services normalise the farthest pixels (the sky) to exactly 0: they must not vanish.
    depth, rgb, _ = flat_inputs(2, 4, depth=0.0)
    cloud = project(depth, rgb, near_m=1.0, far_m=10.0)
    assert cloud.count == 8
    distances = np.linalg.norm(cloud.positions, axis=1)
    if project is project_planar:
        distances = -cloud.positions[:, 2]
    assert np.allclose(distances, 10.0, rtol=1e-6)


def test_all_invalid_depth_gives_an_empty_cloud() -> None:
    depth, rgb, _ = flat_inputs(3, 4, depth=np.nan)
    cloud = project_planar(depth, rgb)
    assert cloud.count == 0
    assert [b.tolist() for b in cloud.bounds()] == [[0, 0, 0], [0, 0, 0]]


def test_max_points_keeps_evenly_spaced_points() -> None:
    depth, rgb, categories = flat_inputs(10, 10)
    depth[0, :] = np.nan  # ten invalid pixels: 90 candidates
    cloud = project_planar(depth, rgb, categories, depth_is_metric=True, max_points=30)
    assert cloud.count == 30
    valid = np.flatnonzero(np.isfinite(depth).reshape(-1))
    chosen = valid[(np.arange(30) * 90) // 30]  # every third valid pixel
    assert np.array_equal(cloud.colors, rgb.reshape(-1, 3)[chosen])
    assert np.array_equal(cloud.segments, categories.reshape(-1)[chosen])
    assert project_planar(depth, rgb, depth_is_metric=True, max_points=500).count == 90
    assert project_equirect(depth, rgb, depth_is_metric=True, max_points=7).count == 7


def test_categories_default_to_low_ambient() -> None:
    depth, rgb, _ = flat_inputs(2, 3)
    assert (project_equirect(depth, rgb).segments == 5).all()


def test_positions_are_read_only_and_colours_are_views_when_nothing_is_dropped() -> None:
    depth, rgb, categories = flat_inputs(4, 4)
    cloud = project_planar(depth, rgb, categories)
    assert not cloud.positions.flags.writeable
    assert np.shares_memory(cloud.colors, rgb) and np.shares_memory(cloud.segments, categories)


def test_float64_depth_and_integer_categories_are_accepted() -> None:
    depth, rgb, categories = flat_inputs(3, 3)
    cloud = project_planar(depth.astype(np.float64), rgb, categories.astype(np.int64))
    assert np.array_equal(cloud.positions, project_planar(depth, rgb, categories).positions)
    assert cloud.segments.dtype == np.uint8


# --- input checks ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"depth": np.zeros((4, 5, 1), np.float32)}, r"depth must be a 2-D \(H, W\) array"),
        ({"depth": np.ones((4, 5), np.uint16)}, "depth must be floating point"),
        ({"depth": np.ones((0, 5), np.float32)}, "depth is empty"),
        ({"rgb": np.zeros((4, 5, 3), np.float32)}, r"rgb must be a uint8 \(H, W, 3\) array"),
        ({"rgb": np.zeros((4, 6, 3), np.uint8)}, "rgb shape .* does not match depth shape"),
        ({"rgb": np.zeros((4, 5, 4), np.uint8)}, "rgb shape .* does not match depth shape"),
        ({"categories": np.zeros((4, 5), np.float32)}, "categories must be an integer"),
        ({"categories": np.zeros((5, 4), np.uint8)}, "categories shape .* does not match"),
        ({"categories": np.full((4, 5), 6, np.uint8)}, "categories holds 6; .* 0..5"),
        ({"categories": np.full((4, 5), -1, np.int32)}, "categories holds -1"),
        ({"stride": 0}, "stride must be an integer >= 1"),
        ({"stride": 1.5}, "stride must be an integer >= 1"),
        ({"max_points": 0}, "max_points must be None or an integer >= 1"),
        ({"near_m": 5.0, "far_m": 5.0}, "need 0 < near_m < far_m < inf"),
        ({"near_m": 0.0}, "need 0 < near_m < far_m < inf"),
        ({"fov_deg": 180.0}, r"fov_deg \(horizontal\) must lie in \(0, 180\)"),
        ({"focal_length_px": -1.0}, "focal_length_px must be positive and finite"),
        ({"focal_length_px": (1.0, 2.0, 3.0)}, r"focal_length_px must be f or \(fx, fy\)"),
        ({"principal_point": (1.0, np.nan)}, "principal_point must be finite"),
    ],
)
def test_bad_inputs_are_named(change: dict, message: str) -> None:
    depth, rgb, categories = flat_inputs(4, 5)
    arguments = {"depth": depth, "rgb": rgb, "categories": categories, **change}
    with pytest.raises(ValueError, match=message):
        project_planar(**arguments)

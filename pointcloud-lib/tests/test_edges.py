"""Edge clean-up against scenes with known geometry (scene_dev.edge_scenes): synthetic scenes and
KITTI / NYU ground truth, each with its depth blurred across discontinuities the way a depth
model blurs them (a Gaussian in disparity)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from pointcloud import (
    DEFAULT_EDGE_RTOL,
    DEFAULT_FOV_DEG,
    DEFAULT_GRAZING_DEG,
    decode,
    edge_mask,
    grazing_mask,
    pack_equirect,
    pack_planar,
    project_planar,
)
from scene_dev import edge_reference, edge_scenes
from scene_dev.edge_scenes import synthetic_scene

MODEL_BLUR_PX = 1.5  # the blur the projections' default was chosen at


def model_blur(z: np.ndarray, sigma: float = MODEL_BLUR_PX) -> np.ndarray:
    return edge_scenes.degrade(z, sigma)[0]

def _scored(scene: edge_scenes.Scene, sigma: float, noise: float, **mask_args):
    blurred, observed = edge_scenes.degrade(scene.truth, sigma, noise, wrap=scene.wrap)
    mask = edge_mask(observed, wrap=scene.wrap, **mask_args)
    result = edge_scenes.score(scene.truth, blurred, mask, scene.scored, sigma=sigma,
                               wrap=scene.wrap)
    print(f"\n{scene.name}, sigma {sigma:g}, noise {noise:g}: {result.flying} flying, "
          f"{result.removed:.1%} removed; {result.surface} surface, {result.lost:.2%} lost")
    return result


# The "Done when" check: edge_mask(depth) with its defaults on a box before a sloping
# wall, blurred like a depth model's output upsampled 1-4x. The 3x3 range test alone removed 89 %
# and 71 % at sigma 3 and 4; the ramp test (on by default) follows the wider ramps.
@pytest.mark.parametrize("noise", [0.0, edge_scenes.NOISE])
@pytest.mark.parametrize("sigma", edge_scenes.SIGMAS_PX)
def test_a_box_before_a_sloping_wall_loses_its_flying_pixels(sigma: float, noise: float):
    scene = edge_scenes.synthetic_scenes()[0]
    assert scene.name == "box before sloping wall"
    result = _scored(scene, sigma, noise)
    assert result.removed >= 0.95
    assert result.lost <= 0.01


# Every synthetic scene at every blur, defaults only (bench_edges.py prints the same table with
# the shared ground truth, where sigma 2-4 still miss the targets).
def _synthetic_cases():
    for index, scene in enumerate(edge_scenes.synthetic_scenes()):
        if index == 0:
            continue  # the box before a sloping wall: the check above
        for noise in (0.0, edge_scenes.NOISE):
            for sigma in edge_scenes.SIGMAS_PX:
                yield pytest.param(index, sigma, noise, id=f"{scene.name}-{sigma:g}-{noise:g}")


@pytest.mark.parametrize(("index", "sigma", "noise"), list(_synthetic_cases()))
def test_synthetic_scenes_meet_the_targets_at_every_blur(index: int, sigma: float, noise: float):
    """Defaults only, every other synthetic scene (steps, slopes, thin structures, the panorama
    seam with ``wrap``), blurred by sigma 1-4 px, with and without noise."""
    result = _scored(edge_scenes.synthetic_scenes()[index], sigma, noise)
    assert result.removed >= 0.95
    assert result.lost <= 0.01


# One scene a data set: densifying one takes about 10 s (the bench scores all six at every blur).
@pytest.mark.parametrize("case", ["nyu/00000", "kitti/0000000050"])
def test_ground_truth_scenes_meet_the_targets(shared_dir: Path, case: str):
    """The projections' call (range test at DEFAULT_EDGE_RTOL, view-angle test at
    DEFAULT_GRAZING_DEG) on shared ground truth, at one pixel of blur."""
    scene = edge_scenes.ground_truth_scene(shared_dir, case)
    result = _scored(scene, 1.0, 0.0, focal_px=scene.focal_px)
    assert result.removed >= 0.95
    assert result.lost <= 0.01


def test_the_view_angle_test_marks_surfaces_seen_edge_on():
    # A floor 1.5 m below a camera with f = 500 px: seen at atan(1.5 / z), under 1.75 degrees
    # beyond about 49 m.
    focal, height, width = 500.0, 200, 64
    v = np.arange(height, dtype=np.float64)[:, None] - (height - 1) / 2
    z = np.broadcast_to(np.where(v > 0, 1.5 * focal / np.maximum(v, 1e-9), 1e3), (height, width))
    mask = grazing_mask(z.astype(np.float32), focal)
    angle = np.degrees(np.arctan(1.5 / z[:, 0]))
    rows = (v[:, 0] > 0.5) & (np.abs(angle - DEFAULT_GRAZING_DEG) > 0.1)
    rows[[0, -1]] = False
    np.testing.assert_array_equal(mask[rows, width // 2], angle[rows] < DEFAULT_GRAZING_DEG)


def test_the_view_angle_test_agrees_with_cross_product_normals():
    rng = np.random.default_rng(3)
    v, u = np.mgrid[0:60, 0:80].astype(np.float64)
    z = 4.0 + np.sin(u / 7.0) * 0.8 + 0.02 * v + rng.normal(0, 0.01, u.shape)
    focal, cx, cy = 90.0, 41.0, 28.0
    # Normal of z (x, y, 1) from its exact partial derivatives along the pixel grid.
    zu, zv = np.gradient(z, axis=1), np.gradient(z, axis=0)
    x, y = (u - cx) / focal, (v - cy) / focal
    du = np.stack([zu * x + z / focal, zu * y, zu], -1)
    dv = np.stack([zv * x, zv * y + z / focal, zv], -1)
    normal = np.cross(du, dv)
    ray = np.stack([x, y, np.ones_like(x)], -1)
    cos = np.abs((normal * ray).sum(-1)) / np.linalg.norm(normal, axis=-1) / np.linalg.norm(
        ray, axis=-1)
    angle = np.degrees(np.arcsin(np.clip(cos, 0, 1)))
    for degrees in np.percentile(angle[1:-1, 1:-1], (20, 50, 80)):
        mask = grazing_mask(z.astype(np.float32), focal, (cx, cy), grazing_deg=degrees)
        clear = np.abs(angle - degrees) > 0.05
        clear[[0, -1]] = clear[:, [0, -1]] = False
        assert mask[clear].any() and not mask[clear].all()
        np.testing.assert_array_equal(mask[clear], angle[clear] < degrees)


@pytest.mark.parametrize("kwargs", [{"focal_px": 0.0}, {"focal_px": -3.0},
                                    {"focal_px": float("nan")}, {"grazing_deg": 0.0},
                                    {"grazing_deg": 90.0}])
def test_bad_view_angle_parameters_are_refused(kwargs):
    arguments = {"focal_px": 100.0, **kwargs}
    with pytest.raises(ValueError):
        edge_mask(np.ones((8, 8), np.float32), **arguments)


def test_planar_surfaces_are_never_edges():
    v, u = np.mgrid[0:100, 0:100].astype(np.float32)
    tilted = 5.0 + 0.01 * u + 0.005 * v
    assert not edge_mask(tilted).any()


def test_a_step_is_marked_on_both_sides_and_nowhere_else():
    depth = np.full((20, 40), 2.0, np.float32)
    depth[:, 20:] = 8.0
    mask = edge_mask(depth)
    assert mask[:, 19:21].all()
    assert not mask[:, :19].any() and not mask[:, 21:].any()


def _blurred_step(sigma: float, width: int = 160, height: int = 12, at: int = 80,
                  near: float = 2.0, far: float = 5.0) -> np.ndarray:
    """A vertical step from ``near`` to ``far`` metres at column ``at``, blurred in disparity by
    a Gaussian of ``sigma`` px along the rows (a model's upsampled output)."""
    u = np.arange(width) - at + 0.5
    share = 0.5 * (1.0 + np.vectorize(math.erf)(u / (sigma * math.sqrt(2.0))))
    disparity = 1 / near + (1 / far - 1 / near) * share
    return np.tile(1.0 / disparity, (height, 1)).astype(np.float32)


@pytest.mark.parametrize("sigma", [4.0, 5.0])
def test_a_wide_ramp_is_flagged_between_its_surfaces_and_nowhere_else(sigma: float):
    depth = _blurred_step(sigma)
    mask = edge_mask(depth)
    row = depth[6]
    # More than 5 % off both surfaces: between them, flagged; within 1 % of one: kept.
    between = (row > 1.05 * 2.0) & (row < 5.0 / 1.05)
    surface = (row < 1.01 * 2.0) | (row > 5.0 / 1.01)
    assert mask[6, between].all()
    assert not mask[6, surface].any()
    # The 3x3 range test alone sees only the steepest part of it.
    assert edge_mask(depth, ramps=False)[6, between].mean() < 0.75


def test_the_ramp_test_only_adds_to_the_range_test():
    blurred = model_blur(synthetic_scene(120, 160, 125.0), 3.0)
    ranges = edge_mask(blurred, ramps=False)
    both = edge_mask(blurred)
    assert (both >= ranges).all() and both.sum() > ranges.sum()


def test_slanted_planes_and_curved_walls_are_not_ramps():
    # A floor seen from 1.6 m (disparity linear in the row, steep near the horizon) and an
    # equirectangular room's walls (a sinusoid in disparity), noiseless: no ramp anywhere.
    focal, height, width = 300.0, 200, 60
    v = np.arange(height, dtype=np.float64)[:, None] - 20.0
    floor = np.broadcast_to(1.6 * focal / np.maximum(v, 1.0), (height, width))
    assert not edge_mask(floor.astype(np.float32), rtol=10.0)[25:].any()
    room = edge_scenes.panorama_seam()
    room[:] = np.where(room == 2.0, np.roll(room, room.shape[1] // 2, axis=1), room)
    assert not edge_mask(room, rtol=10.0, wrap=True)[40:-40].any()


@pytest.mark.parametrize("wide", [3, 5, 8])
@pytest.mark.parametrize(("pole", "wall"), [(2.0, 8.0), (8.0, 2.0)])
def test_the_core_of_a_thin_object_seen_sharply_is_kept(wide: int, pole: float, wall: float):
    # A pole (or a slit in a near wall): its two edges go, its core stays (the ramp test adds
    # nothing to the range test).
    depth = np.full((16, 40), wall, np.float32)
    depth[:, 19 : 19 + wide] = pole
    edges = [18, 19, 18 + wide, 19 + wide]
    assert np.flatnonzero(edge_mask(depth)[8]).tolist() == edges


def test_a_wide_ramp_across_the_panorama_seam_is_flagged_with_wrap():
    depth = np.roll(_blurred_step(4.0), 80, axis=1)  # the step now lies on the seam
    between = (depth[6] > 1.05 * 2.0) & (depth[6] < 5.0 / 1.05)
    assert edge_mask(depth, wrap=True)[6, between].all()
    assert not edge_mask(depth, wrap=False)[6, between].all()


def test_wrap_tests_the_panorama_seam():
    depth = np.full((10, 40), 2.0, np.float32)
    depth[:, 0] = 8.0  # a step between the last column and the first, across the seam
    assert edge_mask(depth, wrap=True)[:, -1].all()
    assert not edge_mask(depth, wrap=False)[:, -1].any()


def test_invalid_depths_are_ignored_not_edges():
    depth = np.full((10, 10), 3.0, np.float32)
    depth[5, 5] = np.nan
    depth[2, 2] = 0.0
    depth[7, 7] = -1.0
    assert not edge_mask(depth).any()


@pytest.mark.parametrize("rtol", [0, -0.1, float("nan"), float("inf"), 11.0, "x", True])
def test_out_of_range_thresholds_are_refused(rtol):
    with pytest.raises(ValueError, match="rtol"):
        edge_mask(np.ones((4, 4), np.float32), rtol=rtol)
    with pytest.raises(ValueError, match="rtol"):
        project_planar(np.ones((4, 4), np.float32), np.zeros((4, 4, 3), np.uint8), edge_rtol=rtol)


def test_projections_and_packs_drop_the_edges_and_report_the_count():
    truth = synthetic_scene(120, 160, 125.0)
    blurred = model_blur(truth)
    rgb = np.zeros((*truth.shape, 3), np.uint8)
    # Pinhole grids get the view-angle test too, at the projection's focal length.
    focal = (truth.shape[1] / 2) / math.tan(math.radians(DEFAULT_FOV_DEG) / 2)
    expected = int(edge_mask(blurred, focal_px=focal).sum())
    assert expected > 0
    assert len(project_planar(blurred, rgb, depth_is_metric=True)) == truth.size
    cloud = project_planar(blurred, rgb, depth_is_metric=True, edge_rtol=DEFAULT_EDGE_RTOL)
    assert len(cloud) == truth.size - expected
    stats: dict = {}
    packed = pack_planar(blurred, rgb, cloud_id="x", depth_is_metric=True,
                         edge_rtol=DEFAULT_EDGE_RTOL, stats=stats)
    assert stats == {"edges_dropped": expected}
    assert decode(packed).header["count"] == truth.size - expected
    # Normalized depth is tested in metres; the equirect pack wraps.
    normalized = (1.0 / blurred - 1 / 20.0) / (1.0 - 1 / 20.0)
    stats = {}
    pack_equirect(normalized, rgb, cloud_id="y", near_m=1.0, far_m=20.0, edge_rtol=0.1,
                  stats=stats)
    assert stats["edges_dropped"] == int(edge_mask(blurred, wrap=True).sum())


@pytest.mark.parametrize("block_values", [40, 200, 1000])
def test_row_blocks_do_not_change_the_mask(monkeypatch, block_values):
    """The map is processed in row blocks that fit the CPU's cache (the range test's and the
    ramp test's): any block height, even one row, gives the mask of a single block."""
    from pointcloud import edges as module

    rng = np.random.default_rng(5)
    depth = model_blur(synthetic_scene(37, 29, 30.0))
    depth[rng.random(depth.shape) < 0.05] = np.nan
    cases = [{"size": 3}, {"size": 5, "wrap": True}, {"focal_px": 30.0},
             {"focal_px": (30.0, 25.0), "principal_point": (10.0, 20.0), "size": 5}]
    whole = [edge_mask(depth, **case) for case in cases]
    graze = grazing_mask(depth, 30.0, grazing_deg=10.0)
    monkeypatch.setattr(module, "_BLOCK_VALUES", block_values)
    monkeypatch.setattr(module, "_RAMP_BLOCK_VALUES", block_values)
    for case, expected in zip(cases, whole, strict=True):
        np.testing.assert_array_equal(edge_mask(depth, **case), expected)
    np.testing.assert_array_equal(grazing_mask(depth, 30.0, grazing_deg=10.0), graze)
    assert graze.any() and whole[0].any()


def _maps():
    """Synthetic scenes blurred and noisy, and random maps (log-normal, their running sums:
    ramps of every length, NaN holes), of odd shapes down to one row or column."""
    rng = np.random.default_rng(11)
    for index, scene in enumerate(edge_scenes.synthetic_scenes()):
        sigma = edge_scenes.SIGMAS_PX[index % len(edge_scenes.SIGMAS_PX)]
        for noise in (0.0, edge_scenes.NOISE):
            yield edge_scenes.degrade(scene.truth, sigma, noise, wrap=scene.wrap)[1], scene.wrap
    for case in range(24):
        height, width = (int(n) for n in rng.integers(1, 120, 2))
        depth = np.exp(rng.normal(0, rng.uniform(0.01, 1.0), (height, width)))
        if case % 3 == 0:
            depth = np.cumsum(depth, axis=case % 2)
        if case % 4 == 1:
            depth[rng.random(depth.shape) < 0.05] = np.nan
        yield depth.astype(np.float32), bool(case % 2)


def test_the_per_ramp_test_equals_the_whole_array_reference():
    """The ramp test skips ramps by bounds and tests the pixels of the rest: the same float32
    operations as the whole-array formulation, so the same mask, bit for bit."""
    from pointcloud import edges as module

    flagged = 0
    for depth, wrap in _maps():
        expected = edge_reference.edge_mask_ramps_before(depth, wrap)
        np.testing.assert_array_equal(edge_mask(depth, wrap=wrap), expected)
        flagged += int((expected & ~edge_mask(depth, wrap=wrap, ramps=False)).sum())
        prepared = np.where(depth > 0, depth, np.float32(np.nan)).astype(np.float32)
        np.testing.assert_array_equal(module._ramps(prepared, wrap),
                                      edge_reference.ramps_before(prepared, wrap))
    assert flagged > 1000  # the ramp test adds to the range test on these maps


def test_the_sparse_gap_closing_equals_the_whole_array_one():
    from pointcloud import edges as module

    rng = np.random.default_rng(12)
    for case in range(60):
        height, width = (int(n) for n in rng.integers(1, 40, 2))
        ramp = rng.random((height, width)) < rng.uniform(0.0, 0.6)
        wide = ramp & (rng.random(ramp.shape) < rng.uniform(0.0, 1.0))
        for wrap in (False, True):
            np.testing.assert_array_equal(module._close_gaps(ramp, wide, wrap),
                                          edge_reference.close_gaps_before(ramp, wide, wrap),
                                          err_msg=f"case {case}, wrap {wrap}")

"""Edge clean-up against scenes with known geometry: a synthetic box in front of a wall and a
ground plane, and KITTI / NYU ground truth, each with its depth blurred across discontinuities
the way a depth model blurs them (a Gaussian in disparity, 1.5 px)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage
from scipy.interpolate import griddata

from pointcloud import (
    DEFAULT_EDGE_RTOL,
    decode,
    edge_mask,
    pack_equirect,
    pack_planar,
    project_planar,
)

BLUR_SIGMA_PX = 1.5
# A point is "in the gap" when blurring moved it more than this from its surface, at a true jump
# of at least JUMP (smaller steps leave no visible sheet).
GAP_TOLERANCE = 0.05
JUMP = 0.25


def synthetic_scene(height: int = 480, width: int = 640, focal: float = 500.0) -> np.ndarray:
    """z of a pinhole view: a wall at 20 m, a floor 1.5 m below the camera, a wall 3 m to the
    left, and a 2 x 2 m box face at 4 m."""
    v, u = np.mgrid[0:height, 0:width].astype(np.float64)
    x, y = (u - (width - 1) / 2) / focal, ((height - 1) / 2 - v) / focal
    z = np.full((height, width), 20.0)
    z = np.minimum(z, np.where(y < 0, 1.5 / np.maximum(-y, 1e-9), np.inf))
    z = np.minimum(z, np.where(x < 0, -3.0 / np.minimum(x, -1e-9), np.inf))
    box = (np.abs(x * 4.0) < 1.0) & (y * 4.0 > -1.5) & (y * 4.0 < 0.5)
    return np.where(box, np.minimum(z, 4.0), z).astype(np.float32)


def model_blur(z: np.ndarray, sigma: float = BLUR_SIGMA_PX) -> np.ndarray:
    inverse = ndimage.gaussian_filter(1.0 / z.astype(np.float64), sigma, mode="nearest")
    return (1.0 / inverse).astype(np.float32)


def dense_ground_truth(path: Path, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Sparse ground truth made dense by interpolating in disparity (planes stay planes), and the
    mask of the measured pixels, the only ones scored."""
    sparse = np.asarray(Image.open(path)).astype(np.float64) / scale
    valid = sparse > 0
    rows, cols = np.nonzero(valid)
    grid = tuple(np.mgrid[0 : sparse.shape[0], 0 : sparse.shape[1]])
    linear = griddata((rows, cols), 1.0 / sparse[valid], grid, method="linear")
    nearest = griddata((rows, cols), sparse[valid], grid, method="nearest")
    return np.where(np.isfinite(linear), 1.0 / linear, nearest).astype(np.float32), valid


def score(truth: np.ndarray, blurred: np.ndarray, mask: np.ndarray,
          scored: np.ndarray | None = None) -> tuple[float, float]:
    """(fraction of gap points removed, fraction of surface points removed)."""
    scored = np.ones(truth.shape, bool) if scored is None else scored
    error = np.abs(blurred - truth) / truth
    jump = ndimage.maximum_filter(truth, 7) / ndimage.minimum_filter(truth, 7) - 1.0 > JUMP
    gap = (error > GAP_TOLERANCE) & jump & scored
    surface = (error <= GAP_TOLERANCE) & scored
    return float(mask[gap].mean()), float(mask[surface].mean())


def test_synthetic_scene_meets_the_targets():
    truth = synthetic_scene()
    blurred = model_blur(truth)
    removed, lost = score(truth, blurred, edge_mask(blurred))
    print(f"\nsynthetic: gap removed {removed:.1%}, surface lost {lost:.2%}")
    assert removed >= 0.95
    assert lost <= 0.01


@pytest.mark.parametrize("case", ["nyu/00000", "nyu/00050", "kitti/0000000005"])
def test_ground_truth_scenes(shared_dir: Path, case: str):
    dataset, name = case.split("/")
    scale = 1000.0 if dataset == "nyu" else 256.0
    truth, valid = dense_ground_truth(shared_dir / "depth-gt" / dataset / f"{name}_depth.png",
                                      scale)
    blurred = model_blur(truth)
    removed, lost = score(truth, blurred, edge_mask(blurred), valid)
    print(f"\n{case}: gap removed {removed:.1%}, surface lost {lost:.2%}")
    # Measured (README): NYU meets the gap target, KITTI's grazing road keeps the default from
    # removing more without eating the road; these bounds guard against regressions.
    assert removed >= (0.9 if dataset == "nyu" else 0.7)
    assert lost <= 0.01


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
    expected = int(edge_mask(blurred).sum())
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


def test_two_megapixels_in_milliseconds():
    depth = model_blur(synthetic_scene(1080, 1920, 1500.0))
    best = min(_timed(edge_mask, depth) for _ in range(3))
    print(f"\nedge_mask 1920x1080: {best * 1000:.1f} ms")


def _timed(fn, *args) -> float:
    started = time.perf_counter()
    fn(*args)
    return time.perf_counter() - started

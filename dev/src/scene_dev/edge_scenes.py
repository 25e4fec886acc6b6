"""Scenes with known depth for measuring the edge clean-up (``pointcloud.edge_mask``), degraded
the way a depth model degrades them, and the scoring of a mask against the truth.

Used by ``tests/test_edges.py`` and ``bench/bench_edges.py``; plain numpy / scipy / Pillow, no
pytest, so it can move into an installed development package unchanged.

A depth model's output is smooth across a discontinuity: its network runs at a few hundred
pixels and is upsampled to the photo, so the step between two surfaces becomes a ramp several
output pixels wide. :func:`degrade` imitates that with a Gaussian blur of disparity (sigma 1 to 4
px) and optionally 1 % multiplicative noise. :func:`score` then counts, against the true depth,
the flying points a mask removed and the surface points it lost.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage
from scipy.spatial import Delaunay

SIGMAS_PX = (1.0, 2.0, 3.0, 4.0)
"""Blur of disparity, in output pixels: Depth Anything V2 at 518 px upsampled to 1-2 MP smears
a step over about this many pixels either side."""

NOISE = 0.01
"""Multiplicative depth noise of the noisy variant (1 %)."""

GAP_TOLERANCE = 0.05
"""A point more than this far (relative) from its true depth, near a true jump, is flying."""

SURFACE_TOLERANCE = 0.01
"""A point within this (relative) of its true depth is surface; between the two it is neither
(a point 3 % off is not worth keeping nor worth a penalty for removing)."""

JUMP = 0.25
"""Smallest true depth ratio (minus 1) that counts as a jump: smaller steps leave no visible
sheet of points."""


@dataclass(frozen=True)
class Scene:
    """True depth (metres; z for pinhole maps, distance along the ray for panoramas), the pixels
    that are scored (measured ones for sparse ground truth), the focal length (None for
    panoramas) and whether the columns wrap (panoramas)."""

    name: str
    truth: np.ndarray
    scored: np.ndarray
    focal_px: float | None = None
    wrap: bool = False


@dataclass(frozen=True)
class Score:
    removed: float  # fraction of the flying points the mask flags
    lost: float  # fraction of the surface points the mask flags
    flying: int
    surface: int


# --- synthetic scenes -----------------------------------------------------------------------


def _rays(height: int, width: int, focal: float) -> tuple[np.ndarray, np.ndarray]:
    v, u = np.mgrid[0:height, 0:width].astype(np.float64)
    return (u - (width - 1) / 2) / focal, ((height - 1) / 2 - v) / focal


def synthetic_scene(height: int = 480, width: int = 640, focal: float = 500.0) -> np.ndarray:
    """z of a pinhole view: a wall at 20 m, a floor 1.5 m below the camera, a wall 3 m to the
    left, and a 2 x 2 m box face at 4 m."""
    x, y = _rays(height, width, focal)
    z = np.full((height, width), 20.0)
    z = np.minimum(z, np.where(y < 0, 1.5 / np.maximum(-y, 1e-9), np.inf))
    z = np.minimum(z, np.where(x < 0, -3.0 / np.minimum(x, -1e-9), np.inf))
    box = (np.abs(x * 4.0) < 1.0) & (y * 4.0 > -1.5) & (y * 4.0 < 0.5)
    return np.where(box, np.minimum(z, 4.0), z).astype(np.float32)


def box_before_sloping_wall(height: int = 480, width: int = 640,
                            focal: float = 500.0) -> np.ndarray:
    """The issue's check: a 1.6 x 1.2 m box face at 3 m in front of a wall that recedes from 6 m
    at the left edge to 12 m at the right (a plane, slanted about 60 degrees)."""
    x, y = _rays(height, width, focal)
    # The plane Z = 8 + 0.52 X: along the ray (x z, z), z (1 - 0.52 x) = 8.
    wall = 8.0 / (1.0 - 0.52 * x)
    box = (np.abs(x * 3.0) < 0.8) & (np.abs(y * 3.0) < 0.6)
    return np.where(box, 3.0, wall).astype(np.float32)


def steps(height: int = 240, width: int = 640) -> np.ndarray:
    """Vertical bands at depths 2, 2.6, 4, 8, 3 and 12 m: jumps of 30 % to 300 % both ways."""
    depths = np.array([2.0, 2.6, 4.0, 8.0, 3.0, 12.0])
    band = np.arange(width) * len(depths) // width
    return np.broadcast_to(depths[band], (height, width)).astype(np.float32).copy()


def slopes(height: int = 480, width: int = 640, focal: float = 500.0) -> np.ndarray:
    """Slanted surfaces: a floor seen from 1.6 m, out to a 30 m backdrop at the horizon, and a
    ceiling plane tilted two ways that meets the backdrop there (the one jump). The floor near
    the horizon is seen almost edge-on: a test that mistakes slant for a jump loses it."""
    x, y = _rays(height, width, focal)
    floor = np.where(y < 0, 1.6 / np.maximum(-y, 1e-9), np.inf)
    ceiling = 5.0 / (1.0 - 0.4 * x - 0.6 * y)
    return np.minimum(np.minimum(floor, 30.0), np.where(y > 0, ceiling, np.inf)).astype(
        np.float32)


def thin_structures(height: int = 320, width: int = 640) -> np.ndarray:
    """Poles 1, 2, 3, 5 and 8 px wide at 2.5 m and a 2 px wire at 4 m before a wall at 10 m."""
    z = np.full((height, width), 10.0)
    for left, wide in zip((80, 180, 280, 380, 480), (1, 2, 3, 5, 8), strict=True):
        z[40:, left : left + wide] = 2.5
    z[100:102, :] = 4.0
    return z.astype(np.float32)


def panorama_seam(height: int = 256, width: int = 512) -> np.ndarray:
    """An equirectangular room (distance along each ray to a box 10 x 10 x 4 m around the
    viewer) with a pillar at 2 m that straddles the seam (the first and last columns)."""
    longitude = ((np.arange(width) + 0.5) / width - 0.5) * 2 * math.pi
    latitude = (0.5 - (np.arange(height) + 0.5) / height) * math.pi
    lon, lat = np.meshgrid(longitude, latitude)
    direction = np.stack([np.cos(lat) * np.sin(lon), np.sin(lat), -np.cos(lat) * np.cos(lon)])
    half = np.array([5.0, 2.0, 5.0])[:, None, None]
    with np.errstate(divide="ignore"):
        r = np.min(half / np.abs(direction), axis=0)
    seam = (np.abs(np.abs(lon) - math.pi) < 0.12) & (np.abs(lat) < 0.8)
    return np.where(seam, 2.0, r).astype(np.float32)


def synthetic_scenes() -> list[Scene]:
    """Every synthetic scene, each scored on all its pixels."""
    def whole(name: str, z: np.ndarray, focal: float | None, wrap: bool = False) -> Scene:
        return Scene(name, z, np.ones(z.shape, bool), focal, wrap)

    return [
        whole("box before sloping wall", box_before_sloping_wall(), 500.0),
        whole("box, floor, walls", synthetic_scene(), 500.0),
        whole("steps", steps(), 500.0),
        whole("slopes", slopes(), 500.0),
        whole("thin structures", thin_structures(), 500.0),
        whole("panorama seam", panorama_seam(), None, wrap=True),
    ]


# --- degradation ----------------------------------------------------------------------------


def degrade(truth: np.ndarray, sigma: float, noise: float = 0.0, *, wrap: bool = False,
            seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(blurred, observed): the depth blurred in disparity by a Gaussian of ``sigma`` px (the
    columns wrapping for a panorama), and the same with ``noise`` multiplicative Gaussian noise
    (the blurred map itself when ``noise`` is 0). Scoring uses the blurred map, masks are
    computed on the observed one: noise must not make a surface point flying."""
    modes = ["nearest", "wrap" if wrap else "nearest"]
    inverse = ndimage.gaussian_filter(1.0 / truth.astype(np.float64), sigma, mode=modes)
    blurred = (1.0 / inverse).astype(np.float32)
    if not noise:
        return blurred, blurred
    rng = np.random.default_rng(seed)
    observed = blurred * (1.0 + noise * rng.standard_normal(truth.shape))
    return blurred, observed.astype(np.float32)


# --- sparse ground truth made dense ---------------------------------------------------------


GROUND_TRUTH = {  # scene -> (depth PNG units a metre, focal length in pixels: SOURCE.txt)
    "nyu/00000": (1000.0, 518.86), "nyu/00050": (1000.0, 518.86), "nyu/00100": (1000.0, 518.86),
    "kitti/0000000005": (256.0, 707.05), "kitti/0000000050": (256.0, 707.05),
    "kitti/0000000100": (256.0, 707.05),
}


def ground_truth_scene(shared_dir: Path, key: str) -> Scene:
    """A ``GROUND_TRUTH`` scene from ``shared_dir/depth-gt``, densified, scored on its measured
    pixels."""
    dataset, name = key.split("/")
    scale, focal = GROUND_TRUTH[key]
    truth, valid = dense_ground_truth(shared_dir / "depth-gt" / dataset / f"{name}_depth.png",
                                      scale)
    return Scene(key, truth, valid, focal)


def dense_ground_truth(path: Path, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Sparse ground truth made dense, and the mask of the measured pixels, the only ones scored.

    Each pixel takes the Delaunay triangle of measured pixels around it. A smooth triangle (its
    corners within JUMP of each other) is interpolated linearly in disparity, so planes stay
    planes; a triangle that spans a jump takes its nearest corner's depth, so the jump stays a
    one-pixel step, as in the scene. Interpolating across it instead (as plain ``griddata`` does)
    fills the LiDAR / Kinect holes that sit at every occlusion boundary with a ramp, a sheet of
    flying pixels in the ground truth itself, which then counts as surface. Pixels outside the
    hull (KITTI's sky) take the nearest measured depth.
    """
    sparse = np.asarray(Image.open(path)).astype(np.float64) / scale
    valid = sparse > 0
    corners = np.argwhere(valid).astype(np.float64)
    triangulation = Delaunay(corners)
    pixels = np.argwhere(np.ones(sparse.shape, bool)).astype(np.float64)
    simplex = triangulation.find_simplex(pixels)
    inside = simplex >= 0
    affine = triangulation.transform[simplex[inside]]
    partial = np.einsum("nij,nj->ni", affine[:, :2], pixels[inside] - affine[:, 2])
    weights = np.column_stack([partial, 1.0 - partial.sum(axis=1)])
    depth = sparse[valid][triangulation.simplices[simplex[inside]]]
    linear = 1.0 / np.einsum("ni,ni->n", weights, 1.0 / depth)
    nearest = depth[np.arange(len(depth)), weights.argmax(axis=1)]
    smooth = depth.max(axis=1) / depth.min(axis=1) - 1.0 <= JUMP
    dense = np.full(sparse.size, np.nan)
    dense[inside] = np.where(smooth, linear, nearest)
    dense = dense.reshape(sparse.shape)
    outside = np.isnan(dense)
    if outside.any():
        source = ndimage.distance_transform_edt(outside, return_distances=False,
                                                return_indices=True)
        dense = dense[tuple(source)]
    dense[valid] = sparse[valid]
    return dense.astype(np.float32), valid


# --- scoring --------------------------------------------------------------------------------


def score(truth: np.ndarray, blurred: np.ndarray, mask: np.ndarray,
          scored: np.ndarray | None = None, *, sigma: float = 1.0, wrap: bool = False,
          reach: int = 1) -> Score:
    """How ``mask`` (True = removed) does on ``blurred`` against ``truth``.

    A surface point is one the blur left within SURFACE_TOLERANCE of its true depth; a flying
    point is one of :func:`flying_points`.
    """
    scored = np.ones(truth.shape, bool) if scored is None else scored
    error = np.abs(blurred - truth) / truth
    flying = flying_points(truth, blurred, scored, sigma=sigma, wrap=wrap, reach=reach)
    surface = (error <= SURFACE_TOLERANCE) & scored
    n_flying, n_surface = int(flying.sum()), int(surface.sum())
    removed = float(mask[flying].mean()) if n_flying else 1.0
    lost = float(mask[surface].mean()) if n_surface else 0.0
    return Score(removed, lost, n_flying, n_surface)


def flying_points(truth: np.ndarray, blurred: np.ndarray, scored: np.ndarray, *,
                  sigma: float = 1.0, wrap: bool = False, reach: int = 1) -> np.ndarray:
    """The flying points of ``blurred``: moved more than GAP_TOLERANCE from the truth, within the
    blur's reach (3 sigma + 3 px) of a true jump, and off every true surface within ``reach``
    pixels: a point that landed on the surface next to it (a foreground pixel given the
    background's depth, say) only moved the boundary by a pixel; it does not hang between the
    surfaces, and no test on the blurred map can tell it from that surface."""
    modes = ["nearest", "wrap" if wrap else "nearest"]
    error = np.abs(blurred - truth) / truth
    window = 2 * (math.ceil(3 * sigma) + 3) + 1
    jump = ndimage.maximum_filter(truth, window, mode=modes) / ndimage.minimum_filter(
        truth, window, mode=modes) - 1.0 > JUMP
    flying = (error > GAP_TOLERANCE) & jump & scored
    height, width = truth.shape
    around = np.pad(np.pad(truth, ((0, 0), (reach, reach)), mode="wrap" if wrap else "edge"),
                    ((reach, reach), (0, 0)), mode="edge")
    for dy in range(2 * reach + 1):
        for dx in range(2 * reach + 1):
            neighbour = around[dy : dy + height, dx : dx + width]
            flying &= np.abs(blurred - neighbour) > GAP_TOLERANCE * neighbour
    return flying


def hidden_in_flat_blur(blurred: np.ndarray, sigma: float, *, wrap: bool = False,
                        spread: float = 0.1) -> np.ndarray:
    """Pixels whose blurred neighbourhood (4 sigma + 1 px square) spans less than ``spread`` in
    disparity (max / min - 1): a flying point there sits in a flat-looking blend (Kinect's
    depth alternating between two surfaces every pixel or two, blurred into mush) that no test
    on the depth alone can tell from a surface. A check of the oracle's fairness, not part of
    the score."""
    modes = ["nearest", "wrap" if wrap else "nearest"]
    size = int(4 * sigma + 1)
    disparity = 1.0 / blurred.astype(np.float64)
    high = ndimage.maximum_filter(disparity, size, mode=modes)
    return high / ndimage.minimum_filter(disparity, size, mode=modes) - 1.0 < spread

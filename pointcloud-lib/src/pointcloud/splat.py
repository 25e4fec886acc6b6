"""Gaussian splats in the 32-byte ``.splat`` layout that web splat renderers read.

The layout (antimatter15/splat, read by @mkkellogg/gaussian-splats-3d, Spark and others), one
record per Gaussian, little endian, no header:

=======  ==========  ======================================================================
bytes    type        meaning
=======  ==========  ======================================================================
0-11     float32 x3  position (metres)
12-23    float32 x3  scale: the standard deviation along the Gaussian's local x, y, z axes
24-27    uint8 x4    RGBA (A = opacity)
28-31    uint8 x4    rotation quaternion w, x, y, z (normalised), each byte ``q * 128 + 128``
=======  ==========  ======================================================================

One Gaussian per point. Its size is the footprint of the pixel it came from at its distance
(``distance x angular_step``, the angle one sampled pixel spans: stride / focal length for a
pinhole image, 2 pi stride / width for a panorama); it is a disc facing the viewer (flattened
along the view ray, its local z axis turned onto the ray), since a depth map sees surfaces only
from the camera.

Opacity falls near depth edges (:func:`edge_opacity`) when the cloud was cleaned of flying pixels
with an edge mask: the points kept beside a dropped edge, and those whose neighbourhood spans
nearly the mask's threshold, are the likeliest to be half foreground, half background.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from pointcloud.cloud import PointCloud
from pointcloud.descriptors import distances

RECORD = np.dtype(
    [("position", "<f4", 3), ("scale", "<f4", 3), ("rgba", "u1", 4), ("rotation", "u1", 4)]
)
assert RECORD.itemsize == 32

FOOTPRINT_SIGMAS = 0.6
"""Standard deviation of a Gaussian as a fraction of its pixel footprint: neighbours overlap
enough to close the gaps between them without blurring the picture."""

FLATNESS = 0.1
"""Thickness along the view ray relative to the width: a disc, not a ball."""


def to_splat(
    cloud: PointCloud, angular_step: float, opacity: np.ndarray | None = None
) -> bytes:
    """The cloud as ``.splat`` bytes, exactly 32 per point.

    ``angular_step`` is the angle (radians) one sampled pixel spans at the viewer. ``opacity``
    (uint8 per point) overrides the default of fully opaque, e.g. lower near depth edges.
    """
    scale, alpha, rotation = _gaussians(cloud, angular_step, opacity)
    records = np.zeros(cloud.count, RECORD)
    if cloud.count == 0:
        return records.tobytes()
    records["position"] = cloud.positions
    records["scale"] = scale
    records["rgba"][:, :3] = cloud.colors
    records["rgba"][:, 3] = alpha
    records["rotation"] = encode_rotation(rotation)
    return records.tobytes()


SH_C0 = 0.28209479177387814
"""The degree-0 spherical harmonic: 3DGS stores a colour c (0..1) as f_dc = (c - 0.5) / SH_C0."""

# Opacity stored as a logit: fully opaque would be infinite; this rounds back to 255.
_MAX_ALPHA = 1 - 1e-4
# Scales stored as logarithms: a point at the viewer would have log(0).
_MIN_SCALE = 1e-7

GAUSSIAN_PLY_PROPERTIES = (
    "x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2", "opacity",
    "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3",
)


def to_gaussian_ply(
    cloud: PointCloud, angular_step: float, opacity: np.ndarray | None = None
) -> bytes:
    """The same Gaussians as :func:`to_splat` as a 3D Gaussian Splatting PLY (the INRIA
    layout, degree-0 colour only): binary little endian, float32 ``x y z``, ``nx ny nz`` (0),
    ``f_dc_0..2`` (colour as the degree-0 SH coefficient), ``opacity`` (logit), ``scale_0..2``
    (natural log), ``rot_0..3`` (quaternion w, x, y, z). 68 bytes a point."""
    scale, alpha, rotation = _gaussians(cloud, angular_step, opacity)
    header = "\n".join([
        "ply",
        "format binary_little_endian 1.0",
        "comment 3D Gaussian splats from pointcloud-lib: one viewer-facing disc per point",
        f"element vertex {cloud.count}",
        *(f"property float {name}" for name in GAUSSIAN_PLY_PROPERTIES),
        "end_header",
        "",
    ]).encode("ascii")
    table = np.zeros((cloud.count, len(GAUSSIAN_PLY_PROPERTIES)), "<f4")
    if cloud.count:
        table[:, 0:3] = cloud.positions
        table[:, 6:9] = (cloud.colors / np.float32(255) - np.float32(0.5)) / np.float32(SH_C0)
        clipped = np.clip(alpha / np.float32(255), 1 - _MAX_ALPHA, _MAX_ALPHA)
        table[:, 9] = np.log(clipped / (1 - clipped))
        table[:, 10:13] = np.log(np.maximum(scale, np.float32(_MIN_SCALE)))
        table[:, 13:17] = rotation
    return header + table.tobytes()


EDGE_OPACITY_FLOOR = 0.2
"""Opacity (fraction of opaque) of a point at or beyond the edge threshold."""

EDGE_SOFT = 0.5
"""Opacity starts to fall where the neighbourhood's relative span reaches this fraction of the
edge threshold ``rtol`` and reaches :data:`EDGE_OPACITY_FLOOR` at ``rtol``."""

EDGE_REACH = 4
"""Cells (of the sampled grid) searched on every side for the far side of a dropped edge: the
3 x 3 edge mask drops a band of 2 cells across a sharp jump and 3 across a one-pixel blend
(every cell whose own 3 x 3 neighbourhood touches the jump), so the kept cells on either side
are up to 4 apart."""


def edge_opacity(cloud: PointCloud, rtol: float) -> np.ndarray | None:
    """uint8 opacity per point, lowered near depth edges; None when the cloud's header has no
    camera to put its points back on their pixels (or they do not fit it).

    ``rtol`` is the threshold the edge mask used (:func:`pointcloud.edge_mask`): a pixel is an
    edge where ``max - min`` of its 3 x 3 neighbourhood exceeds ``rtol`` x its depth. Each point
    goes back to its cell of the sampled grid (the camera's width, height and stride), and two
    relative spans are measured over the *kept* cells around it (missing cells are ignored, so
    holes from thinning or invalid depth cost nothing): the 3 x 3 span, the mask's own
    statistic, and the span over ``2 * EDGE_REACH + 1`` cells divided by ``EDGE_REACH``, which
    sees across a band of dropped edge pixels to the other side of the jump (on a smooth slope
    both equal the per-cell change). The larger one, ``r``, sets the opacity: opaque up to
    ``EDGE_SOFT * rtol``, falling linearly to :data:`EDGE_OPACITY_FLOOR` at ``rtol`` and beyond.
    """
    cells = _grid_cells(cloud)
    if cells is None:
        return None
    index, shape, depth, wrap = cells
    grid = np.full(shape[0] * shape[1], np.nan, np.float32)
    grid[index] = depth
    if np.count_nonzero(grid == grid) != cloud.count:  # two points on one cell: not its grid
        return None
    grid = grid.reshape(shape)
    span = np.maximum(_span(grid, 1, wrap)[index],
                      _span(grid, EDGE_REACH, wrap)[index] / np.float32(EDGE_REACH))
    ratio = span / depth
    soft = EDGE_SOFT * rtol
    fall = np.clip((ratio - soft) / (rtol - soft), 0, 1)
    opacity = 1 - (1 - EDGE_OPACITY_FLOOR) * fall
    return np.rint(opacity * 255).astype(np.uint8)


def _grid_cells(
    cloud: PointCloud,
) -> tuple[np.ndarray, tuple[int, int], np.ndarray, bool] | None:
    """Flat cell index on the sampled grid, the grid's shape, the depth (distance along the
    optical axis, or from the viewer for a panorama) of every point, and whether columns wrap.
    The projection's inverse, as ``pointcloud.grid.pack_grid_from_cloud`` computes it."""
    camera: Any = cloud.header.get("camera")
    if not isinstance(camera, dict) or cloud.count == 0:
        return None
    try:
        width, height, stride = (int(camera[k]) for k in ("width", "height", "stride"))
    except (KeyError, TypeError, ValueError):
        return None
    grid_w, grid_h = -(-width // stride), -(-height // stride)
    # float32 is ample: points sit at cell centres, far from the half-cell rounding boundaries
    # (a float32 angle is off by about 1e-7 rad, 1e-4 of a cell of a 2048-wide panorama), and
    # it takes half the time of float64.
    p = cloud.positions
    x, y, z = (np.ascontiguousarray(p[:, axis]) for axis in range(3))
    panorama = camera.get("model") == "equirectangular"
    with np.errstate(divide="ignore", invalid="ignore"):
        if panorama:
            horizontal = np.hypot(x, z)
            depth = np.hypot(horizontal, y)
            half = np.float32(0.5)
            u = (np.arctan2(x, -z) * np.float32(1 / (2 * math.pi)) + half) * np.float32(width)
            v = (half - np.arctan2(y, horizontal) * np.float32(1 / math.pi)) * np.float32(height)
            u -= half
            v -= half
        elif all(k in camera for k in ("fx", "fy", "cx", "cy")):
            depth = -z
            u = x / depth * np.float32(camera["fx"]) + np.float32(camera["cx"])
            v = np.float32(camera["cy"]) - y / depth * np.float32(camera["fy"])
        else:
            return None
        cols = np.rint(u / np.float32(stride))
        rows = np.rint(v / np.float32(stride))
    if panorama:
        cols %= grid_w
    inside = (cols >= 0) & (cols < grid_w) & (rows >= 0) & (rows < grid_h) & (depth > 0)
    if not inside.all():
        return None
    index = rows.astype(np.intp) * grid_w + cols.astype(np.intp)
    return index, (grid_h, grid_w), depth.astype(np.float32), panorama


def _span(grid: np.ndarray, radius: int, wrap: bool) -> np.ndarray:
    """Flat ``max - min`` over the (2 radius + 1)^2 window of every cell, NaN cells ignored
    (``fmax``/``fmin``); separable, rows then columns."""
    height, width = grid.shape
    padded = np.pad(grid, radius, mode="constant", constant_values=np.nan)
    if wrap:  # a panorama's columns are circular
        padded[:, :radius] = padded[:, width : width + radius]
        padded[:, -radius:] = padded[:, radius : 2 * radius]
    result = []
    for op in (np.fmax, np.fmin):
        across = padded[:, radius : radius + width].copy()
        for k in range(1, radius + 1):
            op(across, padded[:, radius - k : radius - k + width], out=across)
            op(across, padded[:, radius + k : radius + k + width], out=across)
        down = across[radius : radius + height].copy()
        for k in range(1, radius + 1):
            op(down, across[radius - k : radius - k + height], out=down)
            op(down, across[radius + k : radius + k + height], out=down)
        result.append(down)
    return (result[0] - result[1]).ravel()


def _gaussians(
    cloud: PointCloud, angular_step: float, opacity: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per point: float32 (N, 3) scales, uint8 (N,) opacity, float32 (N, 4) rotations."""
    if not (np.isfinite(angular_step) and angular_step > 0):
        raise ValueError(f"angular_step must be a positive angle, got {angular_step!r}")
    count = cloud.count
    alpha = np.full(count, 255, np.uint8) if opacity is None else np.asarray(opacity, np.uint8)
    if alpha.shape != (count,):
        raise ValueError(f"opacity must hold one uint8 per point, got shape {alpha.shape}")
    positions = cloud.positions
    distance = distances(positions)
    sigma = distance * np.float32(angular_step * FOOTPRINT_SIGMAS)
    scale = np.empty((count, 3), np.float32)
    scale[:, 0] = sigma
    scale[:, 1] = sigma
    scale[:, 2] = sigma * np.float32(FLATNESS)
    return scale, alpha, facing_viewer(positions, distance)


def facing_viewer(positions: np.ndarray, distance: np.ndarray) -> np.ndarray:
    """float32 (N, 4) unit quaternions (w, x, y, z) turning the local +Z axis onto the
    direction from each point back to the viewer (the origin)."""
    # Contiguous per-component arrays: (N, 3) and (N, 4) arithmetic runs numpy's slow inner
    # loops of length 3 or 4.
    inverse = np.divide(np.float32(-1), distance, out=np.zeros_like(distance), where=distance > 0)
    nx, ny, nz = (positions[:, axis] * inverse for axis in range(3))
    nz[distance <= 0] = 1  # a point at the viewer: any orientation; facing +Z
    # The shortest rotation from z to n: (1 + z.n, z x n) = (1 + nz, -ny, nx, 0), normalised.
    w = nz
    w += 1
    x = np.negative(ny, out=ny)
    y = nx
    # n = -z (a point straight behind the viewer, on +Z): the formula degenerates; any half
    # turn about an axis in the XY plane does, this one about X.
    opposite = w < 1e-6
    w[opposite], x[opposite], y[opposite] = 0, 1, 0
    norm = np.sqrt(w * w + x * x + y * y)
    quaternion = np.zeros((positions.shape[0], 4), np.float32)
    for column, component in enumerate((w, x, y)):
        np.divide(component, norm, out=quaternion[:, column])
    return quaternion


def encode_rotation(quaternion: np.ndarray) -> np.ndarray:
    """uint8 bytes ``round(q * 128 + 128)``, clipped to 0..255 (the layout's encoding)."""
    return np.clip(np.rint(quaternion * 128 + 128), 0, 255).astype(np.uint8)


def decode(buffer: bytes) -> np.ndarray:
    """The records of ``.splat`` bytes as a structured array (see :data:`RECORD`)."""
    if len(buffer) % RECORD.itemsize:
        raise ValueError(f"a .splat file is whole 32-byte records; got {len(buffer)} bytes")
    return np.frombuffer(buffer, RECORD)

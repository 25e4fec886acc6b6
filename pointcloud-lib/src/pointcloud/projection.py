"""Depth + colour + categories -> :class:`PointCloud`, for pinhole images and 360° panoramas.

Conventions (three.js): metres, right-handed, +Y up, viewer at the origin looking down -Z.
Image row 0 is the top of the picture; pixel (u, v) has its centre at integer coordinates
(OpenCV / Open3D intrinsics), so the default principal point is ((W - 1) / 2, (H - 1) / 2).

The hot path (every pixel valid, which is what depth models produce) builds no per-pixel index
and no full-size temporary: blocks of depth rows are broadcast against per-row and per-column
ray factors straight into the interleaved (N, 3) output, and the exact bounds come from the
blocks' row and column extremes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from pointcloud.categories import CATEGORY_NAMES, LOW_AMBIENT
from pointcloud.cloud import PointCloud, _extremes
from pointcloud.edges import check_edge_rtol, edge_mask

DEFAULT_FOV_DEG = 60.0
"""Horizontal field of view assumed when neither a focal length nor a FOV is given: a typical
phone / generated-image camera."""

Extremes = tuple[np.ndarray, np.ndarray]

# Pixels per block on the dense path: the block's float32 temporaries (512 KiB each) stay in
# a typical L2 cache between the ufunc passes over them (measured best of 2**14..2**18).
_BLOCK_PIXELS = 1 << 17


def project_planar(
    depth: np.ndarray,
    rgb: np.ndarray,
    categories: np.ndarray | None = None,
    *,
    depth_is_metric: bool = False,
    focal_length_px: float | tuple[float, float] | None = None,
    fov_deg: float | None = None,
    principal_point: tuple[float, float] | None = None,
    near_m: float = 1.0,
    far_m: float = 10.0,
    stride: int = 1,
    max_points: int | None = None,
    edge_rtol: float | None = None,
) -> PointCloud:
    """Back-project a pinhole image: pixel (u, v) with depth z lands on
    ``((u - cx) z / fx, -(v - cy) z / fy, -z)``.

    ``depth`` is z (distance along the optical axis), in metres when ``depth_is_metric``, else
    normalized with 1 = ``near_m`` and 0 = ``far_m`` (see :func:`normalized_to_metres`).
    ``focal_length_px`` is f or (fx, fy); it wins over ``fov_deg`` (the horizontal field of
    view); with neither, :data:`DEFAULT_FOV_DEG` applies. Both refer to the full-resolution
    image, whatever the stride. NaN, infinite and non-positive metric depths are dropped (for
    normalized depth, negative ones; 0 is the far plane); ``stride``
    keeps every stride-th row and column; ``max_points`` caps the count, keeping points evenly
    spaced in raster order. ``edge_rtol`` (None = keep every point) drops flying pixels, the
    blend a depth model leaves across a depth discontinuity: see :func:`pointcloud.edge_mask`,
    applied to the sampled grid's depth in metres (:data:`pointcloud.DEFAULT_EDGE_RTOL` is the
    measured default).
    """
    return plan_planar(
        depth,
        rgb,
        categories,
        depth_is_metric=depth_is_metric,
        focal_length_px=focal_length_px,
        fov_deg=fov_deg,
        principal_point=principal_point,
        near_m=near_m,
        far_m=far_m,
        stride=stride,
        max_points=max_points,
        edge_rtol=edge_rtol,
    ).to_cloud()


def project_equirect(
    depth: np.ndarray,
    rgb: np.ndarray,
    categories: np.ndarray | None = None,
    *,
    depth_is_metric: bool = False,
    near_m: float = 1.0,
    far_m: float = 10.0,
    stride: int = 1,
    max_points: int | None = None,
    edge_rtol: float | None = None,
) -> PointCloud:
    """Project an equirectangular panorama onto a sphere around the viewer.

    ``depth`` is the distance along each pixel's ray (the sphere radius), metres or normalized
    as in :func:`project_planar`. The image spans 360° of longitude and 180° of latitude (2:1
    gives square pixels): the centre column faces -Z, columns to its right turn towards +X,
    and the left and right edges meet behind the viewer (+Z); row 0 looks straight up.
    ``edge_rtol`` as in :func:`project_planar`, the neighbourhoods wrapping across the seam.
    """
    return plan_equirect(
        depth,
        rgb,
        categories,
        depth_is_metric=depth_is_metric,
        near_m=near_m,
        far_m=far_m,
        stride=stride,
        max_points=max_points,
        edge_rtol=edge_rtol,
    ).to_cloud()


def normalized_to_metres(depth: np.ndarray, near_m: float, far_m: float) -> np.ndarray:
    """Map normalized depth (1 = near, 0 = far) to metres by interpolating in inverse depth.

    ``1/z = 1/far + d (1/near - 1/far)``. Relative depth models predict disparity (inverse
    depth up to scale and shift), so a linear map of d is a linear map of 1/z: it keeps their
    output's geometry (planes stay planes) and spends resolution near the viewer, where the
    eye sees it, while the far background, the sky included, stays bounded at ``far_m``.
    """
    near_m, far_m = _check_range(near_m, far_m, depth_is_metric=False)
    return _normalized_to_metres(np.asarray(depth, dtype=np.float32), near_m, far_m)


def plan_planar(
    depth: np.ndarray,
    rgb: np.ndarray,
    categories: np.ndarray | None = None,
    *,
    depth_is_metric: bool = False,
    focal_length_px: float | tuple[float, float] | None = None,
    fov_deg: float | None = None,
    principal_point: tuple[float, float] | None = None,
    near_m: float = 1.0,
    far_m: float = 10.0,
    stride: int = 1,
    max_points: int | None = None,
    edge_rtol: float | None = None,
) -> Projection:
    """Check the inputs and choose the points of :func:`project_planar`, computing nothing
    per point yet: the caller decides where the points are written."""
    depth, rgb, categories = _check_images(depth, rgb, categories)
    height, width = depth.shape
    fx, fy = _focal_lengths(width, focal_length_px, fov_deg)
    cx, cy = _principal_point(width, height, principal_point)
    stride, max_points = _check_sampling(stride, max_points)
    near_m, far_m = _check_range(near_m, far_m, depth_is_metric)
    edge_rtol = None if edge_rtol is None else check_edge_rtol(edge_rtol)
    rays = pinhole_rays(width, height, fx, fy, cx, cy, stride)
    camera = {
        "model": "pinhole",
        "width": width,
        "height": height,
        "fx": fx,
        "fy": fy,
        "cx": cx,
        "cy": cy,
        "stride": stride,
    }
    return Projection.sample(
        "planar",
        depth,
        rgb,
        categories,
        rays,
        depth_is_metric,
        near_m,
        far_m,
        stride,
        max_points,
        camera,
        edge_rtol,
    )


@dataclass(frozen=True)
class CloudGrid:
    """Where each point of a decoded cloud came from on its camera's sampled grid."""

    #: Flat index (row * columns + column) of each point's pixel.
    pixels: np.ndarray
    #: (rows, columns) of the sampled grid.
    shape: tuple[int, int]
    #: Each point's distance along its ray (pinhole: -z; equirectangular: the range).
    depth: np.ndarray
    #: Whether the columns wrap (an equirectangular panorama's seam).
    wraps: bool


def grid_of_cloud(cloud: PointCloud) -> CloudGrid:
    """The inverse of the projection, for a decoded cloud whose header carries its ``camera``
    (every ``pack_*`` writes one): the pixel each point came from. The mesh and the grid variant
    are both rebuilt from a stored cloud this way. A ValueError when the header has no camera or
    the points do not lie on its grid."""
    camera = cloud.header.get("camera")
    if not isinstance(camera, dict) or camera.get("model") not in ("pinhole", "equirectangular"):
        raise ValueError("the cloud's header has no camera: it cannot be put back on its grid")
    width, height, stride = camera["width"], camera["height"], camera["stride"]
    grid_w, grid_h = -(-width // stride), -(-height // stride)
    p = cloud.positions.astype(np.float64)
    x, y, z = p[:, 0], p[:, 1], p[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        if camera["model"] == "pinhole":
            depth = -z
            u = x / depth * camera["fx"] + camera["cx"]
            v = camera["cy"] - y / depth * camera["fy"]
        else:
            horizontal = np.hypot(x, z)
            depth = np.hypot(horizontal, y)
            u = (np.arctan2(x, -z) / (2 * math.pi) + 0.5) * width - 0.5
            v = (0.5 - np.arctan2(y, horizontal) / math.pi) * height - 0.5
        cols = np.rint(u / stride)
        rows = np.rint(v / stride)
    wraps = camera["model"] == "equirectangular"
    if wraps:
        cols %= grid_w  # the seam: longitude +180 and -180 are one column
    inside = (cols >= 0) & (cols < grid_w) & (rows >= 0) & (rows < grid_h) & (depth > 0)
    if not inside.all():
        raise ValueError("the cloud's points do not lie on its camera's grid")
    pixels = rows.astype(np.int64) * grid_w + cols.astype(np.int64)
    return CloudGrid(pixels, (grid_h, grid_w), depth, wraps)


def pinhole_rays(
    width: int, height: int, fx: float, fy: float, cx: float, cy: float, stride: int
) -> _PinholeRays:
    """Per-column and per-row ray factors of the sampled pinhole grid (what a decoder of the
    grid variant rebuilds from the header's camera, bit for bit)."""
    cols = np.arange(0, width, stride, dtype=np.float64)
    rows = np.arange(0, height, stride, dtype=np.float64)
    return _PinholeRays(
        x_per_col=((cols - cx) / fx).astype(np.float32)[None, :],
        # Image rows grow downwards; +Y is up.
        y_per_row=((cy - rows) / fy).astype(np.float32)[:, None],
    )


def plan_equirect(
    depth: np.ndarray,
    rgb: np.ndarray,
    categories: np.ndarray | None = None,
    *,
    depth_is_metric: bool = False,
    near_m: float = 1.0,
    far_m: float = 10.0,
    stride: int = 1,
    max_points: int | None = None,
    edge_rtol: float | None = None,
) -> Projection:
    """:func:`plan_planar` for :func:`project_equirect`."""
    depth, rgb, categories = _check_images(depth, rgb, categories)
    height, width = depth.shape
    stride, max_points = _check_sampling(stride, max_points)
    near_m, far_m = _check_range(near_m, far_m, depth_is_metric)
    edge_rtol = None if edge_rtol is None else check_edge_rtol(edge_rtol)
    rays = sphere_rays(width, height, stride)
    camera = {"model": "equirectangular", "width": width, "height": height, "stride": stride}
    return Projection.sample(
        "equirect",
        depth,
        rgb,
        categories,
        rays,
        depth_is_metric,
        near_m,
        far_m,
        stride,
        max_points,
        camera,
        edge_rtol,
    )


def sphere_rays(width: int, height: int, stride: int) -> _SphereRays:
    """:func:`pinhole_rays` for the equirectangular grid."""
    longitude = ((np.arange(0, width, stride) + 0.5) / width - 0.5) * (2.0 * math.pi)
    latitude = (0.5 - (np.arange(0, height, stride) + 0.5) / height) * math.pi
    return _SphereRays(
        sin_lon=np.sin(longitude).astype(np.float32)[None, :],
        neg_cos_lon=(-np.cos(longitude)).astype(np.float32)[None, :],
        cos_lat=np.cos(latitude).astype(np.float32)[:, None],
        sin_lat=np.sin(latitude).astype(np.float32)[:, None],
    )


# --- ray geometry ---------------------------------------------------------------------------
# Each ray class holds float32 factors shaped (h', 1) per row and (1, w') per column, so
# `write` broadcasts them against a block of depth rows; `gather` turns them into one factor
# per kept pixel for the sparse path. The same expressions run on both, so both round alike.
#
# Exact bounds without reading the interleaved output back: fl(q * f) is monotonic in q for a
# fixed factor f. Every coordinate is some per-pixel quantity times a per-column or per-row
# factor, so its extremes follow from that quantity's extremes per column (or row), which are
# cheap contiguous reductions over blocks that are still in cache.


@dataclass(frozen=True)
class _PinholeRays:
    x_per_col: np.ndarray
    y_per_row: np.ndarray

    def gather(self, keep: np.ndarray) -> _PinholeRays:
        return _PinholeRays(*(_per_point(f, keep) for f in (self.x_per_col, self.y_per_row)))

    def rows(self, top: int, bottom: int) -> _PinholeRays:
        return _PinholeRays(self.x_per_col, self.y_per_row[top:bottom])

    def write(self, z: np.ndarray, out: np.ndarray) -> np.ndarray:
        """Positions for depth ``z`` into ``out`` (z.shape + (3,)); returns what X and Z are
        monotonic in per column (z itself)."""
        np.multiply(z, self.x_per_col, out=out[..., 0])
        np.multiply(z, self.y_per_row, out=out[..., 1])
        np.negative(z, out=out[..., 2])
        return z

    def extremes(self, col: Extremes, row: Extremes) -> Extremes:
        """Bounds from the per-column extremes of `write`'s result and per-row ones of z."""
        x = [q * self.x_per_col[0] for q in col]
        y = [q * self.y_per_row[:, 0] for q in row]
        return _stack_extremes(x, y, [-q for q in col])


@dataclass(frozen=True)
class _SphereRays:
    sin_lon: np.ndarray
    neg_cos_lon: np.ndarray
    cos_lat: np.ndarray
    sin_lat: np.ndarray

    def gather(self, keep: np.ndarray) -> _SphereRays:
        factors = (self.sin_lon, self.neg_cos_lon, self.cos_lat, self.sin_lat)
        return _SphereRays(*(_per_point(f, keep) for f in factors))

    def rows(self, top: int, bottom: int) -> _SphereRays:
        return _SphereRays(
            self.sin_lon, self.neg_cos_lon, self.cos_lat[top:bottom], self.sin_lat[top:bottom]
        )

    def write(self, r: np.ndarray, out: np.ndarray) -> np.ndarray:
        """Positions for radius ``r`` into ``out`` (r.shape + (3,)); returns what X and Z are
        monotonic in per column (the distance from the vertical axis)."""
        horizontal = r * self.cos_lat
        np.multiply(horizontal, self.sin_lon, out=out[..., 0])
        np.multiply(r, self.sin_lat, out=out[..., 1])
        np.multiply(horizontal, self.neg_cos_lon, out=out[..., 2])
        return horizontal

    def extremes(self, col: Extremes, row: Extremes) -> Extremes:
        x = [q * self.sin_lon[0] for q in col]
        y = [q * self.sin_lat[:, 0] for q in row]
        return _stack_extremes(x, y, [q * self.neg_cos_lon[0] for q in col])


def _per_point(factor: np.ndarray, keep: np.ndarray) -> np.ndarray:
    return np.broadcast_to(factor, keep.shape)[keep]


def _stack_extremes(*axes: list[np.ndarray]) -> Extremes:
    lo = np.array([min(v.min() for v in candidates) for candidates in axes], dtype=np.float32)
    hi = np.array([max(v.max() for v in candidates) for candidates in axes], dtype=np.float32)
    return lo, hi


# --- the shared pipeline --------------------------------------------------------------------


@dataclass(frozen=True)
class Projection:
    """The points a projection will produce, chosen but not yet computed.

    ``to_cloud`` builds a :class:`PointCloud`; ``write`` fills caller-provided arrays, which is
    how :func:`pointcloud.pack_planar` projects straight into the final PCLD buffer.
    """

    mode: str
    grid: np.ndarray  # the sampled depth rows and columns (a view)
    keep: np.ndarray | None  # sampled pixels to keep; None when every one is kept
    count: int
    rgb: np.ndarray
    categories: np.ndarray | None
    rays: _PinholeRays | _SphereRays
    depth_is_metric: bool
    near_m: float
    far_m: float
    stride: int
    # The header's `camera` (FORMAT.md) less what only the writer knows (depth range, metric
    # flag, where the focal length came from).
    camera: dict[str, Any]
    # Valid sampled pixels dropped as flying pixels (0 when edge_rtol is None).
    edges_dropped: int = 0

    @classmethod
    def sample(
        cls,
        mode: str,
        depth: np.ndarray,
        rgb: np.ndarray,
        categories: np.ndarray | None,
        rays: _PinholeRays | _SphereRays,
        depth_is_metric: bool,
        near_m: float,
        far_m: float,
        stride: int,
        max_points: int | None,
        camera: dict[str, Any],
        edge_rtol: float | None = None,
    ) -> Projection:
        grid = depth[::stride, ::stride]
        keep = _valid_pixels(grid, zero_is_valid=not depth_is_metric)
        edges_dropped = 0
        if edge_rtol is not None:
            # The relative test needs distances: normalized depth is inverse-depth-like.
            metres = grid if depth_is_metric else _normalized_to_metres(grid, near_m, far_m)
            # Pinhole grids also get the view-angle test, in the sampled grid's pixels;
            # panoramas the range test only (the closed form is the pinhole's).
            view = {} if mode == "equirect" else {
                "focal_px": (camera["fx"] / stride, camera["fy"] / stride),
                "principal_point": (camera["cx"] / stride, camera["cy"] / stride),
            }
            edges = edge_mask(metres, rtol=edge_rtol, wrap=mode == "equirect", **view)
            if keep is not None:
                edges &= keep
            edges_dropped = int(np.count_nonzero(edges))
            if edges_dropped:
                keep = ~edges if keep is None else keep & ~edges
        if max_points is not None:
            keep = _thin(grid.shape, keep, max_points)
        count = grid.size if keep is None else int(np.count_nonzero(keep))
        return cls(
            mode,
            grid,
            keep,
            count,
            rgb,
            categories,
            rays,
            depth_is_metric,
            near_m,
            far_m,
            stride,
            camera,
            edges_dropped,
        )

    def to_cloud(self) -> PointCloud:
        positions = np.empty((self.count, 3), np.float32)
        extremes = self.write_positions(positions)
        if self.keep is None:
            # A view of the input when no stride forces a copy.
            colors = np.ascontiguousarray(self._sampled(self.rgb)).reshape(-1, 3)
        else:
            colors = self._sampled(self.rgb)[self.keep]
        segments = self._segments_view()
        # Read-only, so the bounds worked out here stay true while the cloud caches them.
        positions.flags.writeable = False
        cloud = PointCloud(positions, colors, segments)
        if extremes is not None:
            cloud._remember_bounds(*extremes)
        return cloud

    def write(self, positions: np.ndarray, colors: np.ndarray, segments: np.ndarray) -> Extremes:
        """Fill (count, 3) float32 ``positions``, (count, 3) uint8 ``colors`` and (count,)
        uint8 ``segments``; returns the exact per-axis (min, max) of the positions."""
        extremes = self.write_positions(positions)
        if self.keep is None:
            np.copyto(colors.reshape(*self.grid.shape, 3), self._sampled(self.rgb))
        else:
            colors[...] = self._sampled(self.rgb)[self.keep]
        segments[...] = self._segments_view()
        if extremes is None:
            extremes = _extremes(positions)
        return extremes

    def write_positions(self, positions: np.ndarray) -> Extremes | None:
        """Positions into ``positions``; their exact extremes when they come cheap (full grid)."""
        if self.keep is None:
            return self._write_grid(positions)
        z = self.grid[self.keep]  # a fresh 1-D copy: safe to convert in place
        if not self.depth_is_metric:
            _normalized_to_metres(z, self.near_m, self.far_m, out=z)
        self.rays.gather(self.keep).write(z, positions)
        return None

    def _write_grid(self, positions: np.ndarray) -> Extremes:
        # Blocks of whole rows: the block temporaries (metric depth; the sphere's horizontal
        # distance) stay in cache and are reused, so the only large array is the output.
        height, width = self.grid.shape
        out = positions.reshape(height, width, 3)
        rows_per_block = max(1, _BLOCK_PIXELS // width)
        scratch = None if self.depth_is_metric else np.empty((rows_per_block, width), np.float32)
        col_lo = np.full(width, np.inf, np.float32)
        col_hi = np.full(width, -np.inf, np.float32)
        row_lo = np.empty(height, np.float32)
        row_hi = np.empty(height, np.float32)
        for top in range(0, height, rows_per_block):
            bottom = min(top + rows_per_block, height)
            z = self.grid[top:bottom]
            if scratch is not None:
                z = _normalized_to_metres(z, self.near_m, self.far_m, out=scratch[: bottom - top])
            per_col = self.rays.rows(top, bottom).write(z, out[top:bottom])
            np.minimum(col_lo, per_col.min(axis=0), out=col_lo)
            np.maximum(col_hi, per_col.max(axis=0), out=col_hi)
            np.min(z, axis=1, out=row_lo[top:bottom])
            np.max(z, axis=1, out=row_hi[top:bottom])
        return self.rays.extremes((col_lo, col_hi), (row_lo, row_hi))

    def depth_range_m(self) -> list[float]:
        """[near, far] of the cloud in metres: the normalization range for normalized depth,
        the kept depths' extremes for metric depth."""
        if not self.depth_is_metric:
            return [self.near_m, self.far_m]
        if self.count == 0:
            return [0.0, 0.0]
        kept = self.grid if self.keep is None else self.grid[self.keep]
        return [float(kept.min()), float(kept.max())]

    def full_camera(self, focal_source: str | None) -> dict[str, Any]:
        """The header's `camera` for this projection (FORMAT.md)."""
        camera = {
            **self.camera,
            "depth_is_metric": self.depth_is_metric,
            "depth_range_m": self.depth_range_m(),
        }
        if focal_source is not None:
            camera["focal_source"] = focal_source
        return camera

    def _sampled(self, image: np.ndarray) -> np.ndarray:
        return image[:: self.stride, :: self.stride]

    def _segments_view(self) -> np.ndarray:
        if self.categories is None:
            return np.full(self.count, LOW_AMBIENT, dtype=np.uint8)
        sampled = self._sampled(self.categories)
        if self.keep is not None:
            return sampled[self.keep]
        return np.ascontiguousarray(sampled).reshape(-1)


def _valid_pixels(depth: np.ndarray, *, zero_is_valid: bool) -> np.ndarray | None:
    """Mask of finite, positive depths; None when all are (two cheap reductions say so).

    Normalized depth 0 is valid: it means "at far_m" (the sky, typically), not "no depth".
    """
    lowest, highest = depth.min(), depth.max()
    floor_ok = lowest >= 0 if zero_is_valid else lowest > 0  # NaN fails every comparison
    if floor_ok and highest < np.inf:
        return None
    keep = depth >= 0 if zero_is_valid else depth > 0  # False for NaN
    keep &= depth < np.inf
    return keep


def _thin(shape: tuple[int, ...], keep: np.ndarray | None, max_points: int) -> np.ndarray | None:
    """Keep at most ``max_points`` pixels, evenly spaced in raster order among the valid ones:
    deterministic, and spread over the whole image rather than its top rows."""
    available = math.prod(shape) if keep is None else int(np.count_nonzero(keep))
    if available <= max_points:
        return keep
    ranks = (np.arange(max_points, dtype=np.int64) * available) // max_points
    chosen = ranks if keep is None else np.flatnonzero(keep)[ranks]
    thinned = np.zeros(shape, dtype=bool)
    thinned.reshape(-1)[chosen] = True
    return thinned


def _normalized_to_metres(
    depth: np.ndarray, near_m: float, far_m: float, *, out: np.ndarray | None = None
) -> np.ndarray:
    # 1/z = 1/far + d (1/near - 1/far): see normalized_to_metres for why inverse depth.
    inv_far = np.float32(1.0 / far_m)
    inv_span = np.float32(1.0 / near_m - 1.0 / far_m)
    z = np.multiply(depth, inv_span, out=out)
    z += inv_far
    return np.reciprocal(z, out=z)


# --- input checks ---------------------------------------------------------------------------


def _check_images(
    depth: Any, rgb: Any, categories: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    if not isinstance(depth, np.ndarray) or depth.ndim != 2:
        raise ValueError(f"depth must be a 2-D (H, W) array, got {_describe(depth)}")
    if not np.issubdtype(depth.dtype, np.floating):
        raise ValueError(
            f"depth must be floating point (metres, or normalized 0..1), got {depth.dtype}; "
            "convert integer depth maps (millimetres, 1/256 m) to float metres first"
        )
    if depth.size == 0:
        raise ValueError(f"depth is empty: shape {depth.shape}")
    depth = depth.astype(np.float32, copy=False)
    height, width = depth.shape

    if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3:
        raise ValueError(f"rgb must be a uint8 (H, W, 3) array, got {_describe(rgb)}")
    if rgb.shape != (height, width, 3):
        raise ValueError(f"rgb shape {rgb.shape} does not match depth shape {depth.shape} + (3,)")

    if categories is not None:
        if not isinstance(categories, np.ndarray) or not np.issubdtype(
            categories.dtype, np.integer
        ):
            raise ValueError(
                f"categories must be an integer (H, W) array, got {_describe(categories)}"
            )
        if categories.shape != depth.shape:
            raise ValueError(
                f"categories shape {categories.shape} does not match depth shape {depth.shape}"
            )
        lowest, highest = int(categories.min()), int(categories.max())
        if lowest < 0 or highest >= len(CATEGORY_NAMES):
            bad = lowest if lowest < 0 else highest
            raise ValueError(
                f"categories holds {bad}; category indices run 0..{len(CATEGORY_NAMES) - 1}"
            )
        categories = categories.astype(np.uint8, copy=False)
    return depth, rgb, categories


def _describe(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return f"{value.dtype} array of shape {value.shape}"
    return type(value).__name__


def _focal_lengths(
    width: int, focal_length_px: float | tuple[float, float] | None, fov_deg: float | None
) -> tuple[float, float]:
    if focal_length_px is not None:
        if isinstance(focal_length_px, tuple | list):
            if len(focal_length_px) != 2:
                raise ValueError(f"focal_length_px must be f or (fx, fy), got {focal_length_px}")
            fx, fy = (float(f) for f in focal_length_px)
        else:
            fx = fy = float(focal_length_px)
        if not (math.isfinite(fx) and math.isfinite(fy) and fx > 0 and fy > 0):
            raise ValueError(f"focal_length_px must be positive and finite, got {focal_length_px}")
        return fx, fy
    fov = DEFAULT_FOV_DEG if fov_deg is None else float(fov_deg)
    if not 0.0 < fov < 180.0:
        raise ValueError(f"fov_deg (horizontal) must lie in (0, 180), got {fov_deg}")
    # The field of view spans the image edge to edge: W pixels, not the W - 1 between centres.
    focal = (width / 2.0) / math.tan(math.radians(fov) / 2.0)
    return focal, focal


def _principal_point(
    width: int, height: int, principal_point: tuple[float, float] | None
) -> tuple[float, float]:
    if principal_point is None:
        return (width - 1) / 2.0, (height - 1) / 2.0
    if len(principal_point) != 2:
        raise ValueError(f"principal_point must be (cx, cy), got {principal_point}")
    cx, cy = (float(c) for c in principal_point)
    if not (math.isfinite(cx) and math.isfinite(cy)):
        raise ValueError(f"principal_point must be finite, got {principal_point}")
    return cx, cy


def _check_sampling(stride: Any, max_points: Any) -> tuple[int, int | None]:
    if isinstance(stride, bool) or not isinstance(stride, int | np.integer) or stride < 1:
        raise ValueError(f"stride must be an integer >= 1, got {stride!r}")
    if max_points is not None and (
        isinstance(max_points, bool)
        or not isinstance(max_points, int | np.integer)
        or max_points < 1
    ):
        raise ValueError(f"max_points must be None or an integer >= 1, got {max_points!r}")
    return int(stride), None if max_points is None else int(max_points)


def _check_range(near_m: float, far_m: float, depth_is_metric: bool) -> tuple[float, float]:
    near_m, far_m = float(near_m), float(far_m)
    if not depth_is_metric and not (0.0 < near_m < far_m < math.inf):
        raise ValueError(f"need 0 < near_m < far_m < inf, got near_m={near_m}, far_m={far_m}")
    return near_m, far_m

"""Tiling math for high-resolution depth: the tile grid (wrapping around for panoramas), the robust
per-tile scale/shift fit against the global pass, and the raised-cosine blend.

Pure numpy, no model: the pipeline feeds it predictions, tests feed it synthetic fields.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# Tukey's biweight constant: 95% efficiency on Gaussian residuals, zero weight to gross outliers.
TUKEY_C = 4.685
# Residual scale from the median absolute residual, for Gaussian noise.
MAD_TO_SIGMA = 1.4826
FIT_ITERATIONS = 4
FIT_MAX_SAMPLES = 20_000
# A tile whose prediction varies less than this (relative to its magnitude) carries no layout to
# fit, e.g. a patch of clear sky; it takes the global pass's values instead.
MIN_RELATIVE_SPREAD = 1e-6
# Tiles grow by this factor until the grid has no more than the allowed number of tiles.
TILE_GROWTH = 1.25


@dataclass(frozen=True)
class Span:
    """One tile's extent along one axis. ``start + length`` may pass the end on a wrapped axis."""

    start: int
    length: int
    # Pixels shared with the previous / next tile along this axis (0 at an image edge).
    overlap_before: int = 0
    overlap_after: int = 0

    def weights(self) -> np.ndarray:
        """Raised-cosine ramps over each overlap: neighbouring ramps sum to exactly 1, so a blend
        has no visible seam, and every weight stays strictly positive."""
        weights = np.ones(self.length, dtype=np.float64)
        if self.overlap_before:
            ramp = (np.arange(self.overlap_before) + 0.5) / self.overlap_before
            weights[: self.overlap_before] *= 0.5 - 0.5 * np.cos(np.pi * ramp)
        if self.overlap_after:
            ramp = (np.arange(self.overlap_after) + 0.5) / self.overlap_after
            weights[self.length - self.overlap_after :] *= 0.5 + 0.5 * np.cos(np.pi * ramp)
        return weights


@dataclass(frozen=True)
class Tile:
    rows: Span
    cols: Span

    @property
    def shape(self) -> tuple[int, int]:
        return self.rows.length, self.cols.length


@dataclass(frozen=True)
class TileGrid:
    height: int
    width: int
    # Columns wrap around (equirectangular panorama): the last tile continues into the first.
    wrap: bool
    rows: tuple[Span, ...]
    cols: tuple[Span, ...]

    @property
    def tiles(self) -> list[Tile]:
        return [Tile(rows, cols) for rows in self.rows for cols in self.cols]

    def __len__(self) -> int:
        return len(self.rows) * len(self.cols)


def axis_spans(length: int, tile: int, overlap: int, *, wrap: bool = False) -> tuple[Span, ...]:
    """Evenly spaced tiles of ``tile`` pixels covering ``length``, neighbours sharing at least
    ``overlap`` pixels. On a wrapped axis the tiles go round the circle: the last one overlaps the
    first across the seam."""
    if tile <= overlap:
        raise ValueError(f"tile of {tile} px cannot overlap its neighbour by {overlap} px")
    stride = tile - overlap
    if wrap:
        if tile >= length:
            raise ValueError(f"wrapped tiles must be narrower than the image ({tile} >= {length})")
        count = max(2, math.ceil(length / stride))
        starts = [round(i * length / count) for i in range(count)]
        # Unrolled around the circle: the first tile comes again one full turn later.
        unrolled = [*starts, length]
        overlaps = [starts[i] + tile - unrolled[i + 1] for i in range(count)]
        return tuple(
            Span(start=starts[i], length=tile, overlap_before=overlaps[i - 1],
                 overlap_after=overlaps[i])
            for i in range(count)
        )
    if length <= tile:
        return (Span(0, length),)
    count = math.ceil((length - tile) / stride) + 1
    starts = [round(i * (length - tile) / (count - 1)) for i in range(count)]
    return tuple(
        Span(
            start=start,
            length=tile,
            overlap_before=starts[i - 1] + tile - start if i > 0 else 0,
            overlap_after=start + tile - starts[i + 1] if i < count - 1 else 0,
        )
        for i, start in enumerate(starts)
    )


def plan_grid(
    height: int,
    width: int,
    tile_size: int,
    overlap_fraction: float,
    *,
    wrap: bool = False,
    max_tiles: int = 64,
) -> TileGrid:
    """The tile grid for an image; tiles grow beyond ``tile_size`` if the grid would need more
    than ``max_tiles`` (a panorama always keeps at least three columns)."""
    if not 0.0 < overlap_fraction <= 0.5:
        raise ValueError(f"tile overlap must be in (0, 0.5], got {overlap_fraction}")
    tile = tile_size
    while True:
        tile_h = min(tile, height)
        # A wrapped tile wider than half the panorama would overlap itself across the seam.
        tile_w = min(tile, width // 2) if wrap else min(tile, width)
        rows = axis_spans(height, tile_h, _overlap_px(tile_h, overlap_fraction))
        cols = axis_spans(width, tile_w, _overlap_px(tile_w, overlap_fraction), wrap=wrap)
        grid = TileGrid(height=height, width=width, wrap=wrap, rows=rows, cols=cols)
        if len(grid) <= max_tiles or tile >= max(height, width):
            return grid
        tile = math.ceil(tile * TILE_GROWTH)


def _overlap_px(tile: int, fraction: float) -> int:
    return min(tile - 1, max(1, round(tile * fraction)))


def crop(array: np.ndarray, tile: Tile, *, wrap: bool = False) -> np.ndarray:
    """The tile's pixels of an [H, W, ...] array; columns past the right edge wrap to the left."""
    rows = array[tile.rows.start : tile.rows.start + tile.rows.length]
    cols = tile.cols
    if cols.start + cols.length <= array.shape[1]:
        return rows[:, cols.start : cols.start + cols.length]
    if not wrap:
        raise ValueError("tile passes the right edge of an image that does not wrap")
    return np.take(rows, np.arange(cols.start, cols.start + cols.length), axis=1, mode="wrap")


def tile_weights(tile: Tile) -> np.ndarray:
    return np.outer(tile.rows.weights(), tile.cols.weights())


def blend(grid: TileGrid, values: list[np.ndarray]) -> np.ndarray:
    """Weighted average of per-tile maps (each the tile's shape) into one [H, W] float32 map."""
    total = np.zeros((grid.height, grid.width), dtype=np.float64)
    weight_sum = np.zeros_like(total)
    for tile, value in zip(grid.tiles, values, strict=True):
        weights = tile_weights(tile)
        rows = slice(tile.rows.start, tile.rows.start + tile.rows.length)
        for target, source in _column_segments(tile.cols, grid.width):
            total[rows, target] += weights[:, source] * value[:, source]
            weight_sum[rows, target] += weights[:, source]
    return (total / weight_sum).astype(np.float32)


def _column_segments(cols: Span, width: int) -> list[tuple[slice, slice]]:
    """(image columns, tile columns) pairs: one, or two for a tile that wraps past the edge."""
    first = min(cols.length, width - cols.start)
    segments = [(slice(cols.start, cols.start + first), slice(0, first))]
    if first < cols.length:
        segments.append((slice(0, cols.length - first), slice(first, cols.length)))
    return segments


def fit_scale_shift(
    source: np.ndarray,
    target: np.ndarray,
    *,
    pool: int = 1,
    max_samples: int = FIT_MAX_SAMPLES,
) -> tuple[float, float] | None:
    """Robust least squares ``scale * source + shift ~= target`` (Tukey-weighted IRLS).

    Both maps are first block-averaged by ``pool`` so that the tile's fine detail, which the
    low-resolution target lacks, does not bias the scale towards zero. Returns None when the fit
    is meaningless: a flat source or a non-positive scale (the tile disagrees with the layout).
    """
    x = _block_mean(np.asarray(source, dtype=np.float64), pool).ravel()
    y = _block_mean(np.asarray(target, dtype=np.float64), pool).ravel()
    finite = np.isfinite(x) & np.isfinite(y)
    x, y = x[finite], y[finite]
    if x.size > max_samples:
        keep = np.linspace(0, x.size - 1, max_samples).astype(np.int64)
        x, y = x[keep], y[keep]
    if x.size < 3 or np.ptp(x) <= MIN_RELATIVE_SPREAD * (np.abs(x).max() + 1e-12):
        return None
    # Start from quantile matching (robust to outliers of high leverage, which would drag an
    # ordinary least-squares start), then refine by Tukey-weighted least squares.
    x_low, x_median, x_high = np.percentile(x, [25, 50, 75])
    y_low, y_median, y_high = np.percentile(y, [25, 50, 75])
    if x_high > x_low:
        scale = (y_high - y_low) / (x_high - x_low)
        shift = y_median - scale * x_median
    else:  # mostly flat (e.g. sky) with some structure: least squares is the only start left
        solved = _weighted_line(x, y, np.ones_like(x))
        if solved is None:
            return None
        scale, shift = solved
    for _ in range(FIT_ITERATIONS):
        residuals = y - (scale * x + shift)
        sigma = MAD_TO_SIGMA * np.median(np.abs(residuals))
        if sigma <= 1e-12 * (np.abs(y).max() + 1e-12):
            break  # an exact fit: nothing left to down-weight
        u = residuals / (TUKEY_C * sigma)
        weights = np.where(np.abs(u) < 1.0, (1.0 - u * u) ** 2, 0.0)
        solved = _weighted_line(x, y, weights)
        if solved is None:
            break
        scale, shift = solved
    if not (np.isfinite(scale) and np.isfinite(shift)) or scale <= 0.0:
        return None
    return float(scale), float(shift)


def _weighted_line(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[float, float] | None:
    total = w.sum()
    if total <= 0:
        return None
    mean_x = (w * x).sum() / total
    mean_y = (w * y).sum() / total
    var_x = (w * (x - mean_x) ** 2).sum()
    if var_x <= 0:
        return None
    scale = (w * (x - mean_x) * (y - mean_y)).sum() / var_x
    return scale, mean_y - scale * mean_x


def _block_mean(array: np.ndarray, pool: int) -> np.ndarray:
    pool = max(1, min(pool, array.shape[0], array.shape[1]))
    if pool == 1:
        return array
    h, w = (array.shape[0] // pool) * pool, (array.shape[1] // pool) * pool
    return array[:h, :w].reshape(h // pool, pool, w // pool, pool).mean(axis=(1, 3))


def pad_wrap(image: np.ndarray, pad: int) -> np.ndarray:
    """Extend a panorama by ``pad`` columns from the opposite edge on each side, so a single pass
    sees across the seam."""
    if pad <= 0:
        return image
    return np.concatenate([image[:, -pad:], image, image[:, :pad]], axis=1)

"""Flying pixels: the points a depth model leaves hanging between a foreground and a background.

Every monocular depth model blends the two sides of a depth discontinuity over a few pixels, and
back-projection turns that blend into a sheet of points in the air. MoGe's test, used here: a
pixel is a flying pixel when the depth range of its neighbourhood exceeds ``rtol`` times its own
depth. On a smooth surface the range grows with the surface's slant only, a few percent of the
depth per pixel; across a blurred jump it is a large fraction of the depth.

Pure numpy and separable: a sliding max and min along rows, then along columns, each a handful
of whole-array ``fmax``/``fmin`` calls, no per-pixel Python.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

DEFAULT_EDGE_RTOL = 0.1
"""Default relative depth range that marks a flying pixel, chosen by measurement (see the
README's "Edge clean-up"): the largest surface loss it allows is the binding constraint. On the
synthetic scene it removes all gap points and 0.4 % of the surface; on blurred KITTI ground
truth the far road, seen at a grazing angle, changes by several percent per pixel, so a lower
threshold eats road (0.04 loses 14 % of it) while this one keeps it."""

MAX_EDGE_RTOL = 10.0
"""Largest accepted ``rtol``; beyond about 2 the test can no longer fire (a neighbourhood's range
would have to exceed twice the depth) and a larger value is a mistake, not a choice."""


def edge_mask(
    depth: np.ndarray,
    *,
    rtol: float = DEFAULT_EDGE_RTOL,
    size: int = 3,
    wrap: bool = False,
) -> np.ndarray:
    """Boolean (H, W) mask, True at flying pixels: ``max - min`` of the ``size`` x ``size``
    neighbourhood exceeds ``rtol * depth``.

    ``depth`` is a distance (metres, or any unit: the test is relative), along the optical axis
    or along the ray; the relative test must see distances, not disparity or normalized depth.
    NaN and non-positive depths never count as edges and are ignored by their neighbours
    (``fmax``/``fmin`` skip NaN); an infinite neighbour marks the pixel. ``wrap`` makes the
    columns circular, for equirectangular panoramas, so the seam is tested like any other column.
    """
    depth = np.asarray(depth)
    if depth.ndim != 2 or depth.size == 0:
        raise ValueError(f"depth must be a non-empty 2-D array, got shape {depth.shape}")
    rtol = check_edge_rtol(rtol)
    odd = isinstance(size, int | np.integer) and not isinstance(size, bool) and size % 2 == 1
    if not odd or size < 3:
        raise ValueError(f"size must be an odd integer >= 3, got {size!r}")
    depth = depth.astype(np.float32, copy=False)
    # Non-positive depth is "no depth", like NaN: it must not widen its neighbours' range.
    if not depth.min() > 0:  # also True when NaN is present
        depth = np.where(depth > 0, depth, np.float32(np.nan))
    radius = int(size) // 2
    height, width = depth.shape
    padded = _pad(depth, radius, wrap=wrap)
    flat = padded.ravel()
    # Sliding max and min over the flattened padded image: every shift is then a contiguous
    # 1-D ufunc pass (strided 2-D slices cost ~4x as much). A shift of 1 mixes neighbouring
    # rows only in the padding columns, and a shift of one padded row is the vertical step.
    row = padded.shape[1]
    # One scratch buffer serves both horizontal passes: fresh multi-megabyte arrays cost a page
    # fault per 4 KiB on first touch, as much as the arithmetic itself.
    scratch = np.empty_like(flat)
    hi = _sliding(_sliding(flat, radius, 1, np.fmax, scratch), radius, row, np.fmax)
    lo = _sliding(_sliding(flat, radius, 1, np.fmin, scratch), radius, row, np.fmin)
    np.subtract(hi, lo, out=hi)
    np.multiply(flat, np.float32(rtol), out=lo)
    edges = np.greater(hi, lo).reshape(padded.shape)  # False where depth is NaN
    return np.ascontiguousarray(edges[radius : radius + height, radius : radius + width])


def check_edge_rtol(rtol: Any) -> float:
    """``rtol`` as a float, or ValueError when it is not in (0, :data:`MAX_EDGE_RTOL`]."""
    if isinstance(rtol, bool):
        raise ValueError(f"rtol must be a number, got {rtol!r}")
    try:
        value = float(rtol)
    except (TypeError, ValueError):
        raise ValueError(f"rtol must be a number, got {rtol!r}") from None
    if not (math.isfinite(value) and 0.0 < value <= MAX_EDGE_RTOL):
        raise ValueError(f"rtol must lie in (0, {MAX_EDGE_RTOL}], got {rtol!r}")
    return value


def _pad(depth: np.ndarray, radius: int, *, wrap: bool) -> np.ndarray:
    """``depth`` with ``radius`` pixels around it: edge rows repeated (the window shrinks at the
    top and bottom), columns repeated or, for a panorama, taken from the opposite side."""
    padded = np.pad(depth, radius, mode="edge")
    if wrap:
        core = slice(radius, -radius)
        padded[core, :radius] = depth[:, -radius:]
        padded[core, -radius:] = depth[:, :radius]
        padded[:radius] = padded[radius]
        padded[-radius:] = padded[-radius - 1]
    return padded


def _sliding(values: np.ndarray, radius: int, step: int, op: Any,
             out: np.ndarray | None = None) -> np.ndarray:
    """``op`` (fmax or fmin) over ``values[i - radius * step : i + radius * step + 1 : step]``
    for every i of a 1-D array (the window clipped at the ends), into ``out`` if given."""
    if out is None:
        out = values.copy()
    else:
        np.copyto(out, values)
    for k in range(1, radius + 1):
        shift = k * step
        if shift >= values.size:
            break
        op(out[shift:], values[:-shift], out=out[shift:])
        op(out[:-shift], values[shift:], out=out[:-shift])
    return out

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
    hi = _sliding(depth, radius, np.fmax, axis=1, wrap=wrap)
    hi = _sliding(hi, radius, np.fmax, axis=0, wrap=False)
    lo = _sliding(depth, radius, np.fmin, axis=1, wrap=wrap)
    lo = _sliding(lo, radius, np.fmin, axis=0, wrap=False)
    np.subtract(hi, lo, out=hi)
    np.multiply(depth, np.float32(rtol), out=lo)
    return np.greater(hi, lo)  # False where depth is NaN


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


def _sliding(values: np.ndarray, radius: int, op: Any, *, axis: int, wrap: bool) -> np.ndarray:
    """``op`` (fmax or fmin) over a window of 2 * radius + 1 along ``axis``: the array combined
    with shifted copies of itself. Edges clamp (the window shrinks); ``wrap`` goes round."""
    length = values.shape[axis]
    out = values.copy()
    for shift in range(1, radius + 1):
        if shift >= length:
            break
        if wrap:
            op(out, np.roll(values, shift, axis=axis), out=out)
            op(out, np.roll(values, -shift, axis=axis), out=out)
            continue
        head = [slice(None)] * 2
        tail = [slice(None)] * 2
        head[axis], tail[axis] = slice(0, length - shift), slice(shift, length)
        # Each pixel meets its neighbour `shift` away on either side.
        op(out[tuple(head)], values[tuple(tail)], out=out[tuple(head)])
        op(out[tuple(tail)], values[tuple(head)], out=out[tuple(tail)])
    return out

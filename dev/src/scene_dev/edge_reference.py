"""The ramp test of ``pointcloud.edge_mask`` in its first, whole-array formulation (commit
a400852): every step a pass over every pixel of every row and column. The library now works per
ramp and skips the ramps that cannot flag anything; this is the reference it must equal bit for
bit (pointcloud-lib's tests) and the baseline its bench times it against."""

from __future__ import annotations

import numpy as np

from pointcloud import edge_mask, edges


def ramps_before(depth: np.ndarray, wrap: bool) -> np.ndarray:
    """The ramp test of ``edge_mask`` as it was before its per-ramp formulation (commit
    a400852): every step a whole-array pass over every pixel of every row and column. Kept to
    time the current one against it in the same run, and as the reference that
    tests/test_edges.py holds the current mask equal to. ``depth`` is float32, invalid pixels
    NaN."""
    with np.errstate(divide="ignore", invalid="ignore"):
        disparity = np.float32(1.0) / depth
        rows = ramp_rows_before(disparity, wrap, False)
        columns = ramp_rows_before(np.ascontiguousarray(disparity.T), False, wrap)
    mask = close_gaps_before(*rows, wrap)
    mask |= close_gaps_before(*columns, False).T
    return mask


def close_gaps_before(ramp: np.ndarray, wide: np.ndarray, wrap: bool) -> np.ndarray:
    """The gap closing of :func:`ramps_before` as it was (every gap length a whole-array pass):
    ``ramp`` with its gaps of 1-2 px closed, and of up to ``edges._RAMP_GAP_PX`` between two
    ``wide`` ramps."""
    reach = edges._RAMP_GAP_PX
    width = ramp.shape[1]
    mode = "wrap" if wrap else "constant"
    narrow = np.pad(ramp, ((0, 0), (reach, reach)), mode=mode)
    broad = np.pad(wide, ((0, 0), (reach, reach)), mode=mode)
    gaps = np.zeros_like(ramp)
    for before in range(1, reach + 1):
        for after in range(1, reach + 2 - before):
            sides = narrow if before + after <= 3 else broad
            gaps |= sides[:, reach - before : reach - before + width] & sides[
                :, reach + after : reach + after + width]
    return ramp | gaps


def ramp_rows_before(disparity: np.ndarray, wrap_rows: bool,
                     wrap_across: bool) -> tuple[np.ndarray, np.ndarray]:
    """The ramp test along the rows of ``disparity`` (rows wrap with ``wrap_rows``, the box
    across them, along the columns, with ``wrap_across``): the flags, and those of ramps at
    least :data:`edges._RAMP_WIDE_PX` long."""
    height, width = disparity.shape
    reach = edges.RAMP_WIDTH_PX + edges._RAMP_OUTSIDE + max(edges._RAMP_SMOOTHING)
    # Rows padded far enough that a ramp crossing the border (or a panorama's seam) is followed
    # to its end; one row above and below for the box across.
    padded = np.pad(disparity, ((0, 0), (reach, reach)), mode="wrap" if wrap_rows else "edge")
    padded = np.pad(padded, ((1, 1), (0, 0)), mode="edge")
    if wrap_across and height > 1:
        padded[0], padded[-1] = padded[-2], padded[1]
    value = padded[:-2] + padded[1:-1]
    value += padded[2:]
    value *= np.float32(1 / 3)
    mask = np.zeros(value.shape, bool)
    wide = np.zeros(value.shape, bool)
    # Rows are independent: blocks of rows that fit the CPU's cache, as in the range test.
    block = max(1, edges._RAMP_BLOCK_VALUES // value.shape[1])
    for top in range(0, value.shape[0], block):
        rows = value[top : top + block]
        for along in edges._RAMP_SMOOTHING:
            flag, span = ramp_segments_before(rows, along)
            mask[top : top + block] |= flag
            flag &= span >= edges._RAMP_WIDE_PX
            wide[top : top + block] |= flag
    return mask[:, reach : reach + width], wide[:, reach : reach + width]


def ramp_segments_before(value: np.ndarray, along: int) -> tuple[np.ndarray, np.ndarray]:
    """The ramp test on the rows of ``value`` (the profile, smoothed across), its ends found on
    the profile smoothed by a box of ``along`` pixels: the flags, and each pixel's ramp length
    (end to end, px)."""
    rows, width = value.shape
    smooth = value.copy()
    for k in range(1, along // 2 + 1):
        smooth[:, k:] += value[:, :-k]
        smooth[:, :-k] += value[:, k:]
    smooth *= np.float32(1 / along)
    slope = np.zeros_like(smooth)
    np.subtract(smooth[:, 2:], smooth[:, :-2], out=slope[:, 1:-1])
    np.abs(slope, out=slope)
    slope *= np.float32(0.5)
    # A ramp's ends: where the slope's magnitude stops falling, or the profile is flat.
    end = np.ones(smooth.shape, bool)
    inner = slope[:, 1:-1]
    np.less_equal(inner, slope[:, :-2], out=end[:, 1:-1])
    end[:, 1:-1] &= inner <= slope[:, 2:]
    end |= slope <= np.float32(edges._RAMP_FLAT) * smooth
    end[:, [0, -1]] = True
    column = np.arange(width, dtype=np.int32)
    left = np.maximum.accumulate(np.where(end, column, np.int32(0)), axis=1)
    right = np.where(end, column, np.int32(width - 1))[:, ::-1]
    right = np.ascontiguousarray(np.minimum.accumulate(right, axis=1)[:, ::-1])
    # Offsets as float32: int32 with float32 would compute in float64, twice the memory traffic.
    before = np.subtract(column, left).astype(np.float32)
    after = np.subtract(right, column).astype(np.float32)
    span = before + after
    base = (np.arange(rows, dtype=np.int32) * width)[:, None]
    flat = smooth.ravel()
    left += base
    right += base
    at_left, at_right = flat[left], flat[right]
    slope_at_right = slope.ravel()[right]
    # Each surface's slope from the pixels just beyond its end, extrapolated to the pixel. (Near
    # the padded rows' ends the step is shorter than edges._RAMP_OUTSIDE; no flagged ramp reaches
    # there: edges.RAMP_WIDTH_PX stops it.)
    outside = np.float32(1 / edges._RAMP_OUTSIDE)
    left -= edges._RAMP_OUTSIDE
    np.maximum(left, base, out=left)
    right += edges._RAMP_OUTSIDE
    np.minimum(right, base + (width - 1), out=right)
    rise = np.subtract(at_right, at_left)
    from_left = np.subtract(at_left, flat[left])
    # An end where the profile turns back (the top of a bump, the bottom of a valley) is a
    # level: a pixel within edges.RAMP_LEVEL of it stands on that level (the core of a thin object
    # seen sharply), not between two surfaces.
    level = np.abs(value - at_left) <= np.float32(edges.RAMP_LEVEL) * value
    level &= from_left * rise < 0
    from_left *= outside
    from_left *= before
    from_left += at_left
    from_right = np.subtract(flat[right], at_right)
    level |= ((np.abs(value - at_right) <= np.float32(edges.RAMP_LEVEL) * value)
              & (from_right * rise < 0))
    from_right *= outside
    from_right *= after
    np.subtract(at_right, from_right, out=from_right)
    low = np.fmin(from_left, from_right)
    jump = np.fmax(from_left, from_right, out=from_left)
    high = jump.copy()
    jump -= low
    scaled = np.multiply(value, np.float32(edges.RAMP_JUMP), out=at_left)
    flag = jump > scaled
    flag &= span <= edges.RAMP_WIDTH_PX
    flag &= ~level
    np.multiply(value, np.float32(edges.RAMP_MARGIN), out=scaled)
    np.subtract(value, low, out=low)
    flag &= low > scaled
    np.subtract(high, value, out=high)
    flag &= high > scaled
    # The pixel's own slope (over 4 px of the profile unsmoothed along) against its ramp's mean.
    own = np.zeros_like(value)
    np.subtract(value[:, 4:], value[:, :-4], out=own[:, 2:-2])
    np.abs(own, out=own)
    own *= span
    np.multiply(jump, np.float32(4 * edges.RAMP_STEEP), out=scaled)
    flag &= own > scaled
    # A blurred step's shape: its steepest slope times its width is about twice its jump.
    starts = np.flatnonzero(end.ravel())
    steepest = np.maximum.reduceat(slope.ravel(), starts)[np.cumsum(end.ravel()) - 1]
    steepest = np.maximum(steepest.reshape(rows, width), slope_at_right)
    steepest *= span
    jump *= np.float32(edges.RAMP_SHAPE)
    flag &= steepest < jump
    return flag, span


def edge_mask_ramps_before(depth: np.ndarray, wrap: bool = False) -> np.ndarray:
    """``edge_mask(depth, wrap=wrap)`` (range and ramp tests) with the ramp test as it was
    before (:func:`ramps_before`)."""
    mask = edge_mask(depth, wrap=wrap, ramps=False)
    depth = np.asarray(depth).astype(np.float32, copy=False)
    if not depth.min() > 0:
        depth = np.where(depth > 0, depth, np.float32(np.nan))
    mask |= ramps_before(depth, wrap)
    return mask

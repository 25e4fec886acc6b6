"""Flying pixels: the points a depth model leaves hanging between a foreground and a background.

Every monocular depth model blends the two sides of a depth discontinuity over a few pixels, and
back-projection turns that blend into a sheet of points in the air. MoGe's tests, used here: a
pixel is a flying pixel when the depth range of its neighbourhood exceeds ``rtol`` times its own
depth, or (pinhole maps) when its surface is seen nearly edge-on. On a smooth surface the range
grows with the surface's slant only, a few percent of the depth per pixel; across a blurred jump
it is a large fraction of the depth, and the sheet lies almost along the rays.

A depth model's output is upsampled to the photo, so the step between two surfaces is often a
ramp several pixels wide that a 3x3 window sees only part of. The ramp test (on by default)
finds those: along each row and column it follows the disparity gradient to both ends of its
ramp and flags the pixels that lie between two surfaces whose extrapolations disagree
(pointcloud-lib/docs/edges.md has the measurement, and the time it costs).

Pure numpy: the range test is separable, a sliding max and min along rows, then along columns,
each a handful of whole-array ``fmax``/``fmin`` calls; the ramp test finds the ends of the ramps
in a dozen whole-array passes a direction, then works per ramp on the few that can hold a flag
(bounds skip the others) and per pixel only on theirs. No per-pixel Python.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

DEFAULT_EDGE_RTOL = 0.1
"""Default relative depth range that marks a flying pixel, chosen by measurement together with
:data:`DEFAULT_GRAZING_DEG` (see the README's "Edge clean-up"): with the view-angle test it
removes >= 95 % of the gap points and <= 1 % of the surface on the synthetic scene and every
shared KITTI / NYU scene. Lower thresholds eat KITTI's road, seen at a grazing angle (0.08
loses up to 1.8 % of it); higher ones leave NYU's sheets (0.12 removes 87-93 %)."""

DEFAULT_GRAZING_DEG = 1.75
"""MoGe's normal test: a pixel whose surface is seen within this many degrees of edge-on is a
flying pixel too (the blurred sheet between two surfaces lies almost along the rays). Chosen by
measurement with ``rtol`` 0.1 (README's "Edge clean-up"): it removes the tails of KITTI's jumps
that the range test misses, while the road seen at 1.65 m height stays above 1.75 degrees out to
about 50 m."""

MAX_EDGE_RTOL = 10.0
"""Largest accepted ``rtol``; beyond about 2 the test can no longer fire (a neighbourhood's range
would have to exceed twice the depth) and a larger value is a mistake, not a choice."""


def edge_mask(
    depth: np.ndarray,
    *,
    rtol: float = DEFAULT_EDGE_RTOL,
    size: int = 3,
    wrap: bool = False,
    focal_px: float | tuple[float, float] | None = None,
    principal_point: tuple[float, float] | None = None,
    grazing_deg: float = DEFAULT_GRAZING_DEG,
    ramps: bool = True,
) -> np.ndarray:
    """Boolean (H, W) mask, True at flying pixels: ``max - min`` of the ``size`` x ``size``
    neighbourhood exceeds ``rtol * depth``; with ``ramps`` (the default), also the pixels inside
    a blurred step wider than the window (the ramp test below; ``rtol`` does not change it); with
    ``focal_px`` (a pinhole depth map's focal length, in pixels of ``depth``, or (fx, fy)), also
    where the surface is seen within ``grazing_deg`` of edge-on (:func:`grazing_mask`;
    ``principal_point`` defaults to the centre).

    ``depth`` is a distance (metres, or any unit: the test is relative), along the optical axis
    or along the ray; the relative test must see distances, not disparity or normalized depth.
    NaN and non-positive depths never count as edges and are ignored by their neighbours
    (``fmax``/``fmin`` skip NaN); an infinite neighbour marks the pixel. ``wrap`` makes the
    columns circular, for equirectangular panoramas, so the seam is tested like any other column.
    The ramp test (:func:`_ramps`) has no parameter: its thresholds are relative and it finds
    each ramp's own width; ``ramps=False`` leaves the range (and view-angle) test alone.
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
    view = None
    if focal_px is not None:
        view = _View.of(depth.shape, focal_px, principal_point, grazing_deg)
    padded = _pad(depth, radius, wrap=wrap)
    row = padded.shape[1]
    edges = np.empty((height, width), bool)
    grazing = None if view is None else np.empty((height, width), bool)
    # Row blocks of ~1 MB a buffer: the dozen passes over a block then run in the CPU's cache
    # instead of streaming the whole map through memory each time (about 30 % faster at 2 MP).
    block = max(1, min(height, _BLOCK_VALUES // row))
    capacity = (block + 2 * radius) * row
    hi, lo, scratch = (np.empty(capacity, np.float32) for _ in range(3))
    flags = np.empty(capacity, bool)
    for top in range(0, height, block):
        bottom = min(top + block, height)
        flat = padded[top : bottom + 2 * radius].ravel()  # contiguous rows: a view
        _range_block(flat, radius, row, rtol, hi, lo, scratch, flags)
        inside = flags[: flat.size].reshape(-1, row)
        edges[top:bottom] = inside[radius : radius + bottom - top, radius : radius + width]
        if grazing is not None:
            grazing[top:bottom] = view.block(depth, top, bottom)
    if ramps:
        edges |= _ramps(depth, wrap)
    if grazing is not None:
        edges |= grazing
    return edges


_BLOCK_VALUES = 1 << 18
"""float32 values per buffer in one row block (1 MB)."""


def _range_block(flat: np.ndarray, radius: int, row: int, rtol: float, hi: np.ndarray,
                 lo: np.ndarray, scratch: np.ndarray, flags: np.ndarray) -> None:
    """The range test on ``flat``, a block of padded rows flattened, into ``flags[:flat.size]``
    (valid away from the padding).

    Sliding max and min over the flattened rows: every shift is then a contiguous 1-D ufunc
    pass (strided 2-D slices cost ~4x as much). A shift of 1 mixes neighbouring rows only in the
    padding columns, and a shift of one padded row is the vertical step. Each window is written
    shifted by its radius, so the centre pixel keeps its flat index."""
    n = flat.size
    hi, lo, scratch, flags = hi[:n], lo[:n], scratch[:n], flags[:n]
    _window(_window(flat, radius, 1, np.fmax, scratch), radius, row, np.fmax, hi)
    _window(_window(flat, radius, 1, np.fmin, scratch), radius, row, np.fmin, lo)
    inner = slice(radius * (row + 1), n - radius * (row + 1))
    with np.errstate(invalid="ignore"):  # inf - inf where infinities meet: NaN, not an edge
        np.subtract(hi[inner], lo[inner], out=hi[inner])
    np.multiply(flat[inner], np.float32(rtol), out=lo[inner])
    np.greater(hi[inner], lo[inner], out=flags[inner])  # False where depth is NaN


RAMP_JUMP = 0.15
"""Smallest disagreement between the two surfaces' extrapolations, relative to the pixel's
disparity, that the ramp test calls a jump: the oracle's jumps start at 25 % of depth, 20-25 %
of the disparity between them; 0.15 leaves room for the part of the ramp past its ends."""

RAMP_MARGIN = 0.04
"""A pixel is between the two surfaces when it is this far (relative) from both extrapolations:
a surface point lies within 1 % of its surface, a flying point more than 5 % off."""

RAMP_LEVEL = 0.01
"""A pixel within this (relative) of an end where the profile turns back (a bump's top, a
valley's bottom) stands on that level: the core of a thin object seen sharply."""

RAMP_WIDTH_PX = 32
"""Longest ramp the test follows, end to end: a step blurred by a Gaussian of sigma spans about
5-6 sigma, so 32 px covers sigma up to 5 (Depth Anything's 518 px upsampled about 10x). Longer
monotone stretches are mostly curved surfaces (an equirectangular wall is a sinusoid in
disparity): 48 px also covers sigma 8 but loses 0.9-1.6 % of the panorama's walls."""

RAMP_SHAPE = 3.0
"""A blurred step rises by its jump over about 2.5 sigma of its steepest slope (the ramp, about
5 sigma end to end, times the steepest slope is about twice the jump); a curved surface's
(width x steepest slope) is at least four times what its end tangents disagree by. The test
needs (width x steepest slope) below this many jumps."""

RAMP_STEEP = 0.2
"""A flagged pixel's own slope is at least this fraction of its ramp's mean slope: a small
plateau inside a wide transition (two steps a few pixels apart) is a surface, not a ramp."""

_RAMP_SMOOTHING = (3, 5)
"""Box lengths along the profile, one pass each: 3 keeps narrow ramps' shape, 5 finds the ends
of wide ones under 1 % noise (more loses NYU's small plateaus at sigma 1)."""

_RAMP_FLAT = 0.002
"""A relative slope (per pixel) below which the profile is flat: a ramp's end. Without it a
noiseless tail decays for dozens of pixels before its slope stops falling."""

_RAMP_OUTSIDE = 3
"""Pixels beyond each end that give that surface's slope for the extrapolation."""

_RAMP_GAP_PX = 4
"""Longest gap closed between two wide ramps (:func:`_close_gaps`)."""

_RAMP_WIDE_PX = 12
"""A ramp this long end to end (sigma about 2.5 and more) is wide (:func:`_close_gaps`)."""

_RAMP_BLOCK_VALUES = 1 << 17
"""Values a row block of the ramp test: a dozen whole-block passes a block, then work on the
few ramps left; smaller blocks pay numpy's per-call cost more often (1 << 15: 1.3x the time)."""


def _ramps(depth: np.ndarray, wrap: bool) -> np.ndarray:
    """The ramp test of :func:`edge_mask` on a float32 map whose invalid pixels are NaN.

    Along each row and each column, in disparity (a plane is linear in disparity whatever its
    slant, and a depth model blurs a step into a sigmoid there): the profile, smoothed by a box
    of 3 across it and of 3 or 5 along it, splits at the ends of its ramps, where the slope
    stops falling (a local minimum of the slope's magnitude) or the profile is flat. Each
    pixel's ramp is the stretch between the ends around it; each end's surface is extrapolated
    to the pixel with that surface's own slope (from a few pixels beyond the end). The pixel
    is flagged when the two extrapolations disagree by more than :data:`RAMP_JUMP` of its
    disparity, it lies more than :data:`RAMP_MARGIN` from both, and the stretch has a blurred
    step's shape (:data:`RAMP_WIDTH_PX`, :data:`RAMP_SHAPE`, :data:`RAMP_STEEP`), unless it
    stands on the level of a bump's top (:data:`RAMP_LEVEL`); short gaps between flagged pixels
    close (:func:`_close_gaps`). No scale is chosen: each ramp's ends are found, whatever its
    width. NaN (and the pixels within two of one) is never flagged; ``wrap`` makes the rows
    circular."""
    with np.errstate(divide="ignore", invalid="ignore"):
        disparity = np.float32(1.0) / depth
        rows = _ramp_rows(disparity, wrap, False)
        columns = _ramp_rows(np.ascontiguousarray(disparity.T), False, wrap)
    mask = _close_gaps(*rows, wrap)
    mask |= _close_gaps(*columns, False).T
    return mask


def _close_gaps(ramp: np.ndarray, wide: np.ndarray, wrap: bool) -> np.ndarray:
    """``ramp`` (one direction's ramp test, along rows) with its short gaps closed: the top of a
    thin object blurred into a bump is neither of its ramps' inside (both end there), yet it is
    no surface, it hangs between the object and the background. A gap of one or two pixels
    closes; one of up to :data:`_RAMP_GAP_PX` where both sides are ``wide`` ramps (at least
    :data:`_RAMP_WIDE_PX`: a bump's top is wider the wider its blur). (The core of a thin object
    seen sharply is no gap: its flanks stand on its level, unflagged.) ``wrap``: the rows are
    circular.

    Flags are sparse: each flagged pixel and the next one in its row (of ``ramp``, then of
    ``wide``) fill what lies between them when the gap is short enough."""
    mask = ramp.copy()
    width = ramp.shape[1]
    for sides, longest in ((ramp, 2), (wide, _RAMP_GAP_PX)):
        at = np.flatnonzero(sides)
        if at.size == 0:
            continue
        row = at // width
        step = np.diff(at)
        pairs = (row[1:] == row[:-1]) & (step > 1) & (step <= longest + 1)
        first, gap = at[:-1][pairs], step[pairs] - 1
        if wrap:  # each row's last flag and its first, across the seam (the same flag if alone)
            last = np.flatnonzero(np.r_[row[1:] != row[:-1], True])
            begin = np.r_[0, last[:-1] + 1]
            across = at[begin] + width - at[last]
            close = (across > 1) & (across <= longest + 1)
            first = np.r_[first, at[last][close]]
            gap = np.r_[gap, across[close] - 1]
            start = np.r_[row[:-1][pairs], row[last][close]] * width
        else:
            start = row[:-1][pairs] * width
        offset = np.arange(gap.sum()) - np.repeat(np.cumsum(gap) - gap - 1, gap)
        fill = np.repeat(first - start, gap) + offset
        fill %= width
        fill += np.repeat(start, gap)
        mask.ravel()[fill] = True
    return mask


def _ramp_rows(disparity: np.ndarray, wrap_rows: bool,
               wrap_across: bool) -> tuple[np.ndarray, np.ndarray]:
    """The ramp test along the rows of ``disparity`` (rows wrap with ``wrap_rows``, the box
    across them, along the columns, with ``wrap_across``): the flags, and those of ramps at
    least :data:`_RAMP_WIDE_PX` long."""
    height, width = disparity.shape
    reach = RAMP_WIDTH_PX + _RAMP_OUTSIDE + max(_RAMP_SMOOTHING)
    # The profile, the box of 3 across it (the neighbouring rows, the first and last repeated or,
    # with ``wrap_across``, taken from the other end), its rows padded far enough that a ramp
    # crossing the border (or a panorama's seam) is followed to its end.
    value = np.empty((height, width + 2 * reach), np.float32)
    centre = value[:, reach : reach + width]
    if height > 2:
        np.add(disparity[:-2], disparity[1:-1], out=centre[1:-1])
        centre[1:-1] += disparity[2:]
    wrap = wrap_across and height > 1
    above, below = (disparity[-1], disparity[0]) if wrap else (disparity[0], disparity[-1])
    centre[0] = above + disparity[0]
    centre[0] += disparity[min(1, height - 1)]
    if height > 1:
        centre[-1] = disparity[-2] + disparity[-1]
        centre[-1] += below
    centre *= np.float32(1 / 3)
    if wrap_rows:  # the columns beyond each end, taken from the other, as often as needed
        outer = np.r_[np.arange(-reach, 0), np.arange(width, width + reach)] % width
        value[:, np.r_[0:reach, reach + width : width + 2 * reach]] = centre[:, outer]
    else:
        value[:, :reach] = centre[:, :1]
        value[:, reach + width :] = centre[:, -1:]
    mask = np.zeros(value.shape, bool)
    wide = np.zeros(value.shape, bool)
    inside = (reach, reach + width)
    # Rows are independent: blocks of rows that fit the CPU's cache, as in the range test.
    block = max(1, _RAMP_BLOCK_VALUES // value.shape[1])
    for top in range(0, value.shape[0], block):
        rows = value[top : top + block]
        # The boxes along, 3 then 5, share their first sums (same additions in the same order).
        total, summed, smooth = np.empty_like(rows), 0, {}
        total[:, 0] = rows[:, 0]
        np.add(rows[:, 1:], rows[:, :-1], out=total[:, 1:])  # (rows + its shift by one, in place)
        total[:, :-1] += rows[:, 1:]
        summed = 1
        for along in sorted(_RAMP_SMOOTHING):
            for k in range(summed + 1, along // 2 + 1):
                total[:, k:] += rows[:, :-k]
                total[:, :-k] += rows[:, k:]
            summed = along // 2
            smooth[along] = np.multiply(total, np.float32(1 / along))
        for along in _RAMP_SMOOTHING:
            at, long = _ramp_segments(rows, smooth[along], inside)
            mask[top : top + block].ravel()[at] = True
            wide[top : top + block].ravel()[at[long]] = True
    return mask[:, reach : reach + width], wide[:, reach : reach + width]


_RAMP_BOUND = 1e-4
"""Relative slack of the per-ramp bounds that skip ramps before the per-pixel test: float32
rounding is below 1e-6, so a skipped ramp has no flag the per-pixel test would give."""


def _ramp_segments(value: np.ndarray, smooth: np.ndarray,
                   inside: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """The ramp test on the rows of ``value`` (the profile, smoothed across), its ends found on
    ``smooth`` (the profile smoothed along): the flat indices of the flagged pixels whose column
    lies in ``inside`` (start, stop), and which of them lie on ramps at least
    :data:`_RAMP_WIDE_PX` long.

    The pixels between two consecutive ends share their ramp: its ends, their values and
    surfaces' slopes, its steepest slope. Those are computed once a ramp, and a ramp is only
    expanded to its pixels when it can hold a flag: at most :data:`RAMP_WIDTH_PX` long, and a
    bound on its extrapolations' disagreement (each moves from its end by at most its slope
    times the ramp's length) exceeding both :data:`RAMP_JUMP` of a bound on the lowest
    extrapolation and the ramp's steepest slope times its length over :data:`RAMP_SHAPE`, the
    bounds widened by :data:`_RAMP_BOUND`. On the bench's 2 MP maps 1-4 % of the ramps
    pass; their pixels get the per-pixel test, with the same float32 operations in the same
    order as the whole-array formulation (``bench/bench_edges.py`` keeps it, and
    ``tests/test_edges.py`` holds this one equal to it)."""
    width = value.shape[1]
    slope = np.zeros_like(smooth)
    np.subtract(smooth[:, 2:], smooth[:, :-2], out=slope[:, 1:-1])
    np.abs(slope, out=slope)
    slope *= np.float32(0.5)
    # A ramp's ends: where the slope's magnitude stops falling, or the profile is flat.
    end = np.ones(smooth.shape, bool)
    inner = slope[:, 1:-1]
    np.less_equal(inner, slope[:, :-2], out=end[:, 1:-1])
    end[:, 1:-1] &= inner <= slope[:, 2:]
    end |= slope <= np.float32(_RAMP_FLAT) * smooth
    end[:, [0, -1]] = True
    flat, slopes = smooth.ravel(), slope.ravel()
    # The ramps with a pixel inside (an end is never flagged: both extrapolations are its
    # value): an end followed by a pixel that is none, to the next end. Most pixels are ends
    # (on a photo about two in three), so this reads bools instead of listing every end. Each
    # row starts and ends with an end: no ramp spans two rows.
    ends = end.ravel()
    left = np.flatnonzero(np.greater(ends[:-1], ends[1:]))
    right = np.flatnonzero(np.less(ends[:-1], ends[1:]))
    right += 1
    span = right - left
    at_left, at_right = flat[left], flat[right]
    # Each surface's slope from the pixels just beyond its end. A ramp with a pixel inside the
    # unpadded row (at most RAMP_WIDTH_PX long) ends more than _RAMP_OUTSIDE pixels inside its
    # padded row: those pixels lie in its own row. (Others may read the next row's: their
    # pixels are dropped below.)
    from_left = at_left - flat.take(left - _RAMP_OUTSIDE, mode="clip")
    from_right = flat.take(right + _RAMP_OUTSIDE, mode="clip") - at_right
    outside = np.float32(1 / _RAMP_OUTSIDE)
    left_slope = from_left * outside
    right_slope = from_right * outside
    # Bounds over the ramp's inner pixels (1 .. span - 1 from its left end), where both
    # extrapolations move from their end by at most their slope times the span: the largest
    # disagreement and the lowest extrapolation, widened by the float32 rounding.
    lengths = span.astype(np.float32)
    spread = np.abs(left_slope)
    spread += np.abs(right_slope)
    spread *= lengths
    slack = np.abs(at_left) + np.abs(at_right)
    slack += spread
    slack *= np.float32(_RAMP_BOUND)
    spread += slack
    most = np.abs(at_left - at_right)
    most += spread
    lowest = np.minimum(at_left, at_right)
    lowest -= spread
    # A flag needs jump > RAMP_JUMP v and v - low > RAMP_MARGIN v, so jump (1 - RAMP_MARGIN)
    # > RAMP_JUMP low. NaN compares False: such ramps stay.
    with np.errstate(invalid="ignore"):
        hold = ~(most * np.float32(1 - RAMP_MARGIN)
                 <= lowest * np.float32(RAMP_JUMP * (1 - _RAMP_BOUND)))
    hold &= span <= RAMP_WIDTH_PX  # (a longer stretch is no blurred step)
    kept = np.flatnonzero(hold)
    left, span, right, lengths, most = (x[kept] for x in (left, span, right, lengths, most))
    # The steepest slope from end to end (33 values at most), for the few ramps left.
    offsets = np.arange(RAMP_WIDTH_PX + 1)
    steepest = slopes[np.minimum(left[:, None] + offsets, right[:, None])].max(axis=1)
    with np.errstate(invalid="ignore"):
        hold = ~(steepest * lengths * np.float32(1 - _RAMP_BOUND)
                 >= most * np.float32(RAMP_SHAPE))
    kept = kept[hold]
    steepest = steepest[hold]
    left, span = left[hold], span[hold]
    at_left, at_right, from_left, from_right, left_slope, right_slope = (
        x[kept] for x in (at_left, at_right, from_left, from_right, left_slope, right_slope))
    rise = at_right - at_left
    # The pixels of the ramps left: before = 1 .. span - 1 from the left end.
    inner_count = span - 1
    ramp = np.repeat(np.arange(span.size), inner_count)
    before = np.arange(ramp.size) - np.repeat(np.cumsum(inner_count) - inner_count - 1,
                                              inner_count)
    index = left[ramp] + before
    column = index % width
    keep = (column >= inside[0]) & (column < inside[1])
    ramp, before, index = ramp[keep], before[keep], index[keep]
    values = value.ravel()
    v = values[index]
    after = (span[ramp] - before).astype(np.float32)
    before = before.astype(np.float32)
    length = before + after
    at_left, at_right = at_left[ramp], at_right[ramp]
    # An end where the profile turns back (the top of a bump, the bottom of a valley) is a
    # level: a pixel within RAMP_LEVEL of it stands on that level (the core of a thin object
    # seen sharply), not between two surfaces.
    level = np.abs(v - at_left) <= np.float32(RAMP_LEVEL) * v
    level &= (from_left * rise < 0)[ramp]
    level |= (np.abs(v - at_right) <= np.float32(RAMP_LEVEL) * v) & (from_right * rise < 0)[ramp]
    extrapolated_left = left_slope[ramp] * before
    extrapolated_left += at_left
    extrapolated_right = np.subtract(at_right, right_slope[ramp] * after)
    low = np.fmin(extrapolated_left, extrapolated_right)
    high = np.fmax(extrapolated_left, extrapolated_right)
    jump = high - low
    flag = jump > v * np.float32(RAMP_JUMP)
    flag &= ~level
    scaled = v * np.float32(RAMP_MARGIN)
    flag &= (v - low) > scaled
    flag &= (high - v) > scaled
    # The pixel's own slope (over 4 px of the profile unsmoothed along) against its ramp's mean.
    own = np.abs(values[index + 2] - values[index - 2])
    own *= length
    flag &= own > jump * np.float32(4 * RAMP_STEEP)
    # A blurred step's shape: its steepest slope times its width is about twice its jump.
    flag &= steepest[ramp] * length < jump * np.float32(RAMP_SHAPE)
    return index[flag], span[ramp[flag]] >= _RAMP_WIDE_PX


def grazing_mask(
    depth: np.ndarray,
    focal_px: float | tuple[float, float],
    principal_point: tuple[float, float] | None = None,
    *,
    grazing_deg: float = DEFAULT_GRAZING_DEG,
) -> np.ndarray:
    """Boolean (H, W) mask, True where the surface of a pinhole depth map is seen within
    ``grazing_deg`` of edge-on: MoGe's normal test, from the back-projected grid's normal.

    ``depth`` is z along the optical axis; ``focal_px`` is f or (fx, fy) in pixels of ``depth``,
    ``principal_point`` (cx, cy) defaults to the centre. Pixel (v, u) back-projects to
    z (x, y, 1) with x = (u - cx) / fx, y = (v - cy) / fy. With z_x, z_y the derivatives of z
    over x and y (central differences), the normal is (-z_x, -z_y, x z_x + y z_y + z) and its
    dot product with the ray (x, y, 1) is exactly z, so the test needs no cross product and no
    square root: ``z^2 < sin^2(grazing) |normal|^2 |ray|^2``. Border pixels (no central
    difference) and NaN neighbourhoods are never marked.
    """
    z = np.ascontiguousarray(depth, np.float32)
    if z.ndim != 2:
        raise ValueError(f"depth must be a 2-D array, got shape {z.shape}")
    view = _View.of(z.shape, focal_px, principal_point, grazing_deg)
    mask = np.empty(z.shape, bool)
    block = max(1, min(z.shape[0], _BLOCK_VALUES // z.shape[1]))
    for top in range(0, z.shape[0], block):
        bottom = min(top + block, z.shape[0])
        mask[top:bottom] = view.block(z, top, bottom)
    return mask


class _View:
    """The pinhole geometry of the view-angle test: each column's and row's ray tangent."""

    def __init__(self, x: np.ndarray, y: np.ndarray, fx: float, fy: float, sin2: float):
        self.x, self.y, self.fx, self.fy, self.sin2 = x, y, fx, fy, sin2

    @classmethod
    def of(cls, shape: tuple[int, int], focal_px: float | tuple[float, float],
           principal_point: tuple[float, float] | None, grazing_deg: float) -> _View:
        height, width = shape
        fx, fy = (focal_px, focal_px) if np.isscalar(focal_px) else focal_px
        if not all(math.isfinite(f) and f > 0 for f in (fx, fy)):
            raise ValueError(f"focal_px must be positive, got {focal_px!r}")
        if not (math.isfinite(grazing_deg) and 0.0 < grazing_deg < 90.0):
            raise ValueError(f"grazing_deg must lie in (0, 90), got {grazing_deg!r}")
        cx, cy = ((width - 1) / 2, (height - 1) / 2) if principal_point is None \
            else principal_point
        x = ((np.arange(width) - cx) / fx).astype(np.float32)
        y = ((np.arange(height) - cy) / fy).astype(np.float32)[:, None]
        return cls(x, y, float(fx), float(fy), math.sin(math.radians(grazing_deg)) ** 2)

    def block(self, depth: np.ndarray, top: int, bottom: int) -> np.ndarray:
        """The test's mask for rows ``top:bottom`` of ``depth`` (float32, C order)."""
        height, width = depth.shape
        start, stop = max(top - 1, 0), min(bottom + 1, height)
        z = depth[start:stop]
        mask = np.zeros(z.shape, bool)
        if z.shape[0] >= 3 and width >= 3:
            _grazing(z, self.x, self.y[start:stop], self.fx, self.fy, self.sin2, mask)
        # Rows and columns without both neighbours have no central difference.
        mask[:, [0, -1]] = False
        if start == 0:
            mask[0] = False
        if stop == height:
            mask[-1] = False
        return mask[top - start : top - start + bottom - top]


def _grazing(z: np.ndarray, x: np.ndarray, y: np.ndarray, fx: float, fy: float, sin2: float,
             mask: np.ndarray) -> None:
    """:func:`grazing_mask`'s test on a block of at least 3 x 3, into ``mask`` (its first and
    last rows and columns are wrong: the caller clears or drops them)."""
    width = z.shape[1]
    # Central differences as contiguous 1-D passes over the flattened block (a shift of one is
    # the horizontal step, of one row the vertical one). zx = (z[u+1] - z[u-1]) fx / 2.
    flat = z.ravel()
    zx = np.empty_like(z)
    zy = np.empty_like(z)
    np.subtract(flat[2:], flat[:-2], out=zx.ravel()[1:-1])
    np.subtract(flat[2 * width :], flat[: -2 * width], out=zy.ravel()[width:-width])
    zx.ravel()[[0, -1]] = 0
    zy[[0, -1]] = 0
    zx *= np.float32(fx / 2)
    zy *= np.float32(fy / 2)
    third = np.multiply(zx, x)
    scratch = np.multiply(zy, y)
    third += scratch
    third += z
    np.multiply(third, third, out=third)
    np.multiply(zx, zx, out=zx)
    zx += np.multiply(zy, zy, out=zy)
    zx += third
    # |ray|^2 sin^2 = (1 + x^2 + y^2) sin^2: an outer sum, one pass.
    sin2 = np.float32(sin2)
    zx *= np.add((x * x + 1) * sin2, (y * y) * sin2, out=scratch)
    np.multiply(z, z, out=third)
    np.greater(zx, third, out=mask)


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
    if not wrap:
        return np.pad(depth, radius, mode="edge")
    # np.pad's "wrap" repeats the image as often as needed, so a panorama narrower than the
    # window still wraps correctly.
    return np.pad(np.pad(depth, ((0, 0), (radius, radius)), mode="wrap"),
                  ((radius, radius), (0, 0)), mode="edge")


def _window(values: np.ndarray, radius: int, step: int, op: Any,
            out: np.ndarray | None = None) -> np.ndarray:
    """``out[i]`` = ``op`` (fmax or fmin) over ``values[i - radius * step : i + radius * step +
    1 : step]``, for the i whose window lies inside the 1-D array (the first and last
    ``radius * step`` entries of ``out`` are left as they were: padding, never read back).

    ``2 * radius`` whole-array passes and no copy: the first reads two shifted views, each
    further one folds in the next shift."""
    if out is None:
        out = np.empty_like(values)
    span = radius * step
    n = values.size - 2 * span
    if n <= 0:
        return out
    centred = out[span : span + n]
    op(values[:n], values[step : step + n], out=centred)
    for k in range(2, 2 * radius + 1):
        op(centred, values[k * step : k * step + n], out=centred)
    return out

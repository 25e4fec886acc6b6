"""The previous ``pointcloud.descriptors._point_stats`` (commit 3f6ef13), frozen here so that
bench_descriptors.py times the old and the new reduction in the same run. Not imported by the
library."""

from __future__ import annotations

import numpy as np

_MAX_RUNS_PER_POINT = 1 / 16

# Rows of the per-block scratch array: x, y, z, distance, red, green, blue.
_ROWS = 7
_GEOMETRY = 4
# Points per block: the block's scratch (7 float32 rows) stays in a typical L2 cache between
# the passes over it (the de-interleave, the distance, the three reductions). float32 keeps the
# de-interleave cheap (a float64 cast doubles the time of the whole function); colour sums stay
# exact (a block's 16384 x 255 is far below 2**24) and coordinate sums are float32 over at most
# one block, then float64 across blocks and runs.
_BLOCK_POINTS = 1 << 15


def point_stats(
    positions: np.ndarray, colors: np.ndarray, segments: np.ndarray, categories: int
) -> dict[str, np.ndarray]:
    count = segments.shape[0]
    stats = {
        "count": np.zeros(categories, np.int64),
        "sum": np.zeros((categories, _ROWS)),
        "min": np.full((categories, _GEOMETRY), np.inf),
        "max": np.full((categories, _GEOMETRY), -np.inf),
    }
    if count == 0:
        return stats
    starts = _run_starts(segments)
    if starts.size > max(64, count * _MAX_RUNS_PER_POINT):
        order = np.argsort(segments, kind="stable")
        positions, colors, segments = positions[order], colors[order], segments[order]
        starts = _run_starts(segments)
    # Every block boundary starts a run too, so that no run straddles two blocks.
    starts = np.union1d(starts, np.arange(0, count, _BLOCK_POINTS))
    bounds = np.searchsorted(starts, np.arange(0, count + _BLOCK_POINTS, _BLOCK_POINTS))
    # Per run: float32 like the block (an output of another type makes reduceat cast through a
    # buffer, several times slower).
    sums = np.empty((_ROWS, starts.size), np.float32)
    lows = np.empty((_GEOMETRY, starts.size), np.float32)
    highs = np.empty((_GEOMETRY, starts.size), np.float32)
    scratch = np.empty((_ROWS, _BLOCK_POINTS), np.float32)
    for block, first in enumerate(range(0, count, _BLOCK_POINTS)):
        last = min(first + _BLOCK_POINTS, count)
        rows = scratch[:, : last - first]
        np.copyto(rows[:3], positions[first:last].T)
        distance = rows[3]
        np.multiply(rows[0], rows[0], out=distance)
        square = rows[4]  # red's row, before red is copied in
        distance += np.multiply(rows[1], rows[1], out=square)
        distance += np.multiply(rows[2], rows[2], out=square)
        np.sqrt(distance, out=distance)
        np.copyto(rows[4:], colors[first:last].T)
        runs = slice(bounds[block], bounds[block + 1])
        local = starts[runs] - first
        np.add.reduceat(rows, local, axis=1, out=sums[:, runs])
        np.minimum.reduceat(rows[:_GEOMETRY], local, axis=1, out=lows[:, runs])
        np.maximum.reduceat(rows[:_GEOMETRY], local, axis=1, out=highs[:, runs])
    run_category = segments[starts].astype(np.intp)
    if run_category.max() >= categories:
        raise ValueError(
            f"segment value {run_category.max()} is out of range for {categories} categories"
        )
    # Fold the runs per category: the runs ordered by category, one reduceat per quantity.
    order = np.argsort(run_category, kind="stable")
    ordered = run_category[order]
    first_runs = np.flatnonzero(np.concatenate(([True], ordered[1:] != ordered[:-1])))
    present = ordered[first_runs]
    lengths = np.diff(starts, append=count)[order]
    # Point counts from the run lengths: no pass over the points of their own.
    stats["count"][present] = np.add.reduceat(lengths, first_runs)
    stats["sum"][present] = np.add.reduceat(
        sums[:, order].astype(np.float64), first_runs, axis=1
    ).T
    stats["min"][present] = np.minimum.reduceat(lows[:, order], first_runs, axis=1).T
    stats["max"][present] = np.maximum.reduceat(highs[:, order], first_runs, axis=1).T
    return stats


def _run_starts(segments: np.ndarray) -> np.ndarray:
    """Index of the first point of every run of equal categories."""
    changes = np.flatnonzero(segments[1:] != segments[:-1]) + 1
    return np.concatenate(([0], changes)).astype(np.intp)

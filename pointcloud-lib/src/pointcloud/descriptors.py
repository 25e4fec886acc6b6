"""Per-category audio descriptors: where each of the six categories sits, how large and how far.

The audio engine maps categories to sound; these few numbers spare it a scan of every point.
The layout is specified in FORMAT.md ("Audio descriptors"); :func:`describe` computes it.

Speed: a generation's cloud is in raster order and its categories come from a segmentation
map, so equal categories form long runs. Every per-point quantity is reduced once per run with
``ufunc.reduceat`` (contiguous, no per-point index), and the few run results are then folded
per category; a cloud with too many short runs (noise) is first ordered by category (a stable
radix sort of one byte per point), which leaves six runs. About 17 ms for 2 M points on this
project's 2-core CPU, against at least 1.5 s for the request that asks for them: a compiled pass
(numba, 2.5x faster) was tried and taken out, as it cost far more (about 210 MB in the
orchestrator image, a warm-up, two code paths) than it saved.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from pointcloud.categories import CATEGORY_NAMES
from pointcloud.cloud import PointCloud

TOP_LABELS = 5
"""Labels listed per category (the largest by pixel fraction)."""

DECIMALS = 6
"""Floats are rounded to this many decimals (a micrometre; a millionth of a colour step)."""

# Above this many runs per point the run reduction loses to sorting by category first.
_MAX_RUNS_PER_POINT = 1 / 16


def describe(
    cloud: PointCloud,
    labels: Iterable[Mapping[str, Any]] | None = None,
    *,
    top_labels: int = TOP_LABELS,
) -> dict[str, Any]:
    """The audio descriptors of ``cloud`` (JSON-ready: lists, floats, ints, None).

    ``labels`` are the segmenter's labels of the whole image (the orchestrator's record holds
    them: ``label``, ``ade20k_id``, ``category``, ``pixel_fraction``); each category lists its
    ``top_labels`` largest. Without labels the lists are empty and ``pixel_share`` is None.
    """
    count = cloud.count
    categories = len(CATEGORY_NAMES)
    stats = _point_stats(cloud.positions, cloud.colors, cloud.segments, categories)
    by_category = _labels_by_category(labels, categories, top_labels)
    entries = []
    for index, name in enumerate(CATEGORY_NAMES):
        points = int(stats["count"][index])
        entry: dict[str, Any] = {
            "index": index,
            "name": name,
            "count": points,
            "share": _round(points / count) if count else 0.0,
            "pixel_share": None,
            "centroid": None,
            "min": None,
            "max": None,
            "distance": None,
            "mean_color": None,
            "labels": [],
        }
        if points:
            entry.update(
                centroid=_vector(stats["sum"][index, :3] / points),
                min=_vector(stats["min"][index, :3]),
                max=_vector(stats["max"][index, :3]),
                distance={
                    "mean": _round(stats["sum"][index, 3] / points),
                    "min": _round(stats["min"][index, 3]),
                    "max": _round(stats["max"][index, 3]),
                },
                mean_color=_vector(stats["sum"][index, 4:] / points),
            )
        if labels is not None:
            entry["pixel_share"], entry["labels"] = by_category[index]
        entries.append(entry)
    return {"count": count, "categories": entries}


def distances(positions: np.ndarray) -> np.ndarray:
    """float32 distance of each point from the viewer (the origin): sqrt(x*x + y*y + z*z)
    evaluated in float32 in that order, the definition the descriptors use."""
    x, y, z = (positions[:, axis] for axis in range(3))
    out = x * x
    out += y * y
    out += z * z
    return np.sqrt(out, out=out)


# Rows of the per-block float32 scratch array: x, y, z, distance. Colours stay uint8 in rows
# of their own: their run sums are exact in uint32 (a run is at most one block, 32768 x 255 <
# 2**32) and skip a float cast of three values a point.
_GEOMETRY = 4
_CHANNELS = 3
# Points per block: the block's scratch stays in a typical L2 cache between the passes over it
# (the de-interleave, the distance, the reductions). float32 keeps the de-interleave cheap (a
# float64 cast doubles the time of the whole function); coordinate sums are float32 over at
# most one block, then float64 across blocks and runs.
_BLOCK_POINTS = 1 << 15


def _empty_stats(categories: int) -> dict[str, np.ndarray]:
    return {
        "count": np.zeros(categories, np.int64),
        "sum": np.zeros((categories, _GEOMETRY + _CHANNELS)),
        "min": np.full((categories, _GEOMETRY), np.inf),
        "max": np.full((categories, _GEOMETRY), -np.inf),
    }


def _point_stats(
    positions: np.ndarray, colors: np.ndarray, segments: np.ndarray, categories: int
) -> dict[str, np.ndarray]:
    """Per category: point count, sums of x, y, z, distance, r, g, b, and minima and maxima of
    x, y, z, distance (inf / -inf where a category has no points)."""
    count = segments.shape[0]
    stats = _empty_stats(categories)
    if count == 0:
        return stats
    changes = segments[1:] != segments[:-1]
    if np.count_nonzero(changes) > max(64, count * _MAX_RUNS_PER_POINT):
        order = np.argsort(segments, kind="stable")
        positions, colors, segments = positions[order], colors[order], segments[order]
        changes = segments[1:] != segments[:-1]
    # Every block boundary starts a run too, so that no run straddles two blocks.
    changes[_BLOCK_POINTS - 1 :: _BLOCK_POINTS] = True
    starts = np.flatnonzero(np.concatenate(([True], changes)))
    bounds = np.searchsorted(starts, np.arange(0, count + _BLOCK_POINTS, _BLOCK_POINTS))
    # Per run, in the block's types (an output of another type makes reduceat cast through a
    # buffer, several times slower).
    sums = np.empty((_GEOMETRY, starts.size), np.float32)
    color_sums = np.empty((_CHANNELS, starts.size), np.uint32)
    lows = np.empty((_GEOMETRY, starts.size), np.float32)
    highs = np.empty((_GEOMETRY, starts.size), np.float32)
    scratch = np.empty((_GEOMETRY + 1, _BLOCK_POINTS), np.float32)
    channel_scratch = np.empty((_CHANNELS, _BLOCK_POINTS), np.uint8)
    for block, first in enumerate(range(0, count, _BLOCK_POINTS)):
        last = min(first + _BLOCK_POINTS, count)
        rows = scratch[:, : last - first]
        np.copyto(rows[:3], positions[first:last].T)
        distance, square = rows[3], rows[4]
        np.multiply(rows[0], rows[0], out=distance)
        distance += np.multiply(rows[1], rows[1], out=square)
        distance += np.multiply(rows[2], rows[2], out=square)
        np.sqrt(distance, out=distance)
        channels = channel_scratch[:, : last - first]
        np.copyto(channels, colors[first:last].T)
        runs = slice(bounds[block], bounds[block + 1])
        local = starts[runs] - first
        geometry = rows[:_GEOMETRY]
        np.add.reduceat(geometry, local, axis=1, out=sums[:, runs])
        np.add.reduceat(channels, local, axis=1, dtype=np.uint32, out=color_sums[:, runs])
        np.minimum.reduceat(geometry, local, axis=1, out=lows[:, runs])
        np.maximum.reduceat(geometry, local, axis=1, out=highs[:, runs])
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
    folded = np.concatenate((sums[:, order].astype(np.float64), color_sums[:, order]))
    stats["sum"][present] = np.add.reduceat(folded, first_runs, axis=1).T
    stats["min"][present] = np.minimum.reduceat(lows[:, order], first_runs, axis=1).T
    stats["max"][present] = np.maximum.reduceat(highs[:, order], first_runs, axis=1).T
    return stats


def _labels_by_category(
    labels: Iterable[Mapping[str, Any]] | None, categories: int, top: int
) -> list[tuple[float, list[dict[str, Any]]]]:
    grouped: list[list[Mapping[str, Any]]] = [[] for _ in range(categories)]
    for label in labels or ():
        category = int(label["category"])
        if 0 <= category < categories:
            grouped[category].append(label)
    result = []
    for members in grouped:
        members.sort(key=lambda m: (-float(m["pixel_fraction"]), str(m["label"])))
        total = sum(float(m["pixel_fraction"]) for m in members)
        listed = [
            {
                "label": str(m["label"]),
                "ade20k_id": int(m["ade20k_id"]),
                "pixel_fraction": _round(float(m["pixel_fraction"])),
                "share": _round(float(m["pixel_fraction"]) / total) if total > 0 else 0.0,
            }
            for m in members[:top]
        ]
        result.append((_round(total), listed))
    return result


def _round(value: float) -> float:
    return round(float(value), DECIMALS)


def _vector(values: np.ndarray) -> list[float]:
    return [_round(v) for v in values]

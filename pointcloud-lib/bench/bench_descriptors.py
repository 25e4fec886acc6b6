"""Benchmark: per-category audio descriptors and .splat export of a 2M-point cloud, against
baselines measured in the same run.

    python pointcloud-lib/bench/bench_descriptors.py [--repeats 15]

The cloud: a 2048x1024 panorama (2,097,152 points). Categories either as a segmentation map
gives them (regions: a few runs per image row, the orchestrator's case) or as noise (a category
drawn per pixel, the worst case: describe() sorts the points by category first).

  describe (regions)    pointcloud.descriptors.describe (the numpy reduction)
  describe (noise)      the worst case
  _point_stats          the per-point pass alone: the older reduction (3f6ef13, frozen in
                        _previous_descriptors.py) and the current one
  to_splat              32 bytes a point
  edge_opacity          the splats' opacity near depth edges (points back on their grid cells)
  baselines             PointCloud.bounds() (one exact min/max pass over the positions),
                        np.bincount of the segments (one pass over a byte per point),
                        to_ply (16 bytes a point), encode (the PCLD copy)

Best-of-N wall, median wall and median CPU times (the CPU time of this process is the steadier on
a shared machine; the repeats go round all cases, interleaved), each as a ratio of the bounds()
pass, and the old/new ratio of the reduction.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from _previous_descriptors import point_stats as previous_point_stats

import pointcloud as pc
from pointcloud.descriptors import _point_stats, describe
from pointcloud.splat import edge_opacity, to_splat


def timed(
    cases: dict[str, Callable[[], Any]], repeats: int
) -> dict[str, tuple[float, float, float]]:
    """Best wall, median wall and median CPU ms of each case. The repeats go round the cases
    (one call of each per round), so that a burst of load on a shared machine hits old and new
    alike."""
    for fn in cases.values():
        fn()
    walls: dict[str, list[float]] = {name: [] for name in cases}
    cpus: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(repeats):
        for name, fn in cases.items():
            gc.collect()
            wall, cpu = time.perf_counter(), time.process_time()
            result = fn()
            cpus[name].append(time.process_time() - cpu)
            walls[name].append(time.perf_counter() - wall)
            del result
    return {
        name: (min(walls[name]) * 1e3, statistics.median(walls[name]) * 1e3,
               statistics.median(cpus[name]) * 1e3)
        for name in cases
    }


def clouds() -> tuple[pc.PointCloud, pc.PointCloud]:
    height, width = 1024, 2048
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    depth = (0.5 + 0.4 * np.sin(x / 97.0) * np.cos(y / 53.0)).astype(np.float32)
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    # Regions: a smooth field cut into six bands (about 10 runs per row).
    field = np.sin(x / 211.0) + np.cos(y / 157.0) + 0.5 * np.sin((x + y) / 89.0)
    regions = np.digitize(field, np.quantile(field, np.linspace(0, 1, 7)[1:-1])).astype(np.uint8)
    # Through PCLD, as the orchestrator stores it: the header's camera places each point on
    # its grid cell (edge_opacity needs it).
    cloud = pc.decode(pc.pack_equirect(depth, rgb, regions, depth_is_metric=True, cloud_id="b"))
    noise = rng.integers(0, 6, cloud.count, dtype=np.uint8)
    return cloud, pc.PointCloud(cloud.positions, cloud.colors, noise)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    cloud, noisy = clouds()
    runs = int(np.count_nonzero(cloud.segments[1:] != cloud.segments[:-1])) + 1
    print(f"{cloud.count:,} points; {runs:,} runs of equal categories in the regions case")
    print()
    arrays = (cloud.positions, cloud.colors, cloud.segments)
    cases = [
        ("PointCloud.bounds() [baseline]", lambda: pc.PointCloud(
            cloud.positions.copy(), cloud.colors, cloud.segments).bounds()),
        ("np.bincount(segments) [baseline]", lambda: np.bincount(cloud.segments, minlength=6)),
        ("describe (regions)", lambda: describe(cloud)),
        ("describe (noise)", lambda: describe(noisy)),
        ("_point_stats (3f6ef13)", lambda: previous_point_stats(*arrays, 6)),
        ("_point_stats (current)", lambda: _point_stats(*arrays, 6)),
        ("encode (PCLD copy) [baseline]", lambda: pc.encode(cloud, mode="equirect", cloud_id="b")),
        ("to_ply [baseline]", lambda: pc.to_ply(cloud)),
        ("to_splat", lambda: to_splat(cloud, angular_step=2 * np.pi / 2048)),
        ("edge_opacity", lambda: edge_opacity(cloud, 0.1)),
    ]
    copy = "positions.copy()"
    results = timed(dict(cases) | {copy: lambda: cloud.positions.copy()}, args.repeats)
    # bounds() of a fresh array: the copy is timed too, so subtract a copy's time.
    copy_ms = results.pop(copy)
    bounds = tuple(b - c for b, c in zip(results[cases[0][0]], copy_ms, strict=True))
    results[cases[0][0]] = bounds
    print(f"{'case':36} {'best ms':>9} {'median':>9} {'CPU med':>9} {'x bounds (CPU)':>15}")
    for name, (wall, median, cpu) in results.items():
        print(f"{name:36} {wall:9.2f} {median:9.2f} {cpu:9.2f} {cpu / max(bounds[2], 1e-9):15.1f}")
    old, new = results["_point_stats (3f6ef13)"], results["_point_stats (current)"]
    print(f"\n_point_stats (3f6ef13) / current: {old[2] / new[2]:.2f}x (median CPU), "
          f"{old[1] / new[1]:.2f}x (median wall)")


if __name__ == "__main__":
    main()

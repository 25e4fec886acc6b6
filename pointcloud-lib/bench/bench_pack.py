"""Benchmark: depth + colour + categories -> final PCLD buffer, against baselines from the same run.

    python pointcloud-lib/bench/bench_pack.py [--repeats 15]

Cases: a 2048x1024 equirect panorama (normalized depth) and a 1024x1024 pinhole image (metric
depth). For each it times

  pack_*               projection written straight into the final buffer (the hot path)
  project_* + encode   PointCloud first, then bytes (the general API)
  pack_* quantized     10 bytes a point

against three baselines:

  memset               allocate an output-sized numpy buffer and fill it: the floor for
                       producing that many fresh bytes
  memset (bytearray)   the same with malloc'd memory, which is what a bytes result costs
  Open3D               PointCloud.create_from_rgbd_image on the same depth and colour (the
                       panorama as if it were a pinhole image: Open3D has no equirect
                       projection), skipped with a loud note when open3d is not installed

Times are the best of --repeats runs (wall clock; the median is printed beside it): the best
run is the one least disturbed by other processes on a shared machine. Memory is the peak
traced by tracemalloc during one call (numpy reports its buffers to it), beyond what was
allocated before, as a multiple of the output size.

Targets from the issue: >= 10x faster than Open3D, <= 3x the memset floor, peak extra memory
<= 2x the output size.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import os
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

import pointcloud as pc

FOV_DEG = 60.0


@dataclass
class Case:
    name: str
    mode: str  # "planar" or "equirect"
    depth: np.ndarray
    rgb: np.ndarray
    categories: np.ndarray
    depth_is_metric: bool

    @property
    def kwargs(self) -> dict[str, Any]:
        extra = {"fov_deg": FOV_DEG} if self.mode == "planar" else {}
        return {"depth_is_metric": self.depth_is_metric, **extra}


def make_cases() -> list[Case]:
    rng = np.random.default_rng(0)

    def images(height: int, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        y, x = np.mgrid[0:height, 0:width].astype(np.float32)
        smooth = 0.5 + 0.4 * np.sin(x / 97.0) * np.cos(y / 53.0)
        depth = (smooth + rng.normal(0, 0.01, smooth.shape)).clip(0.01, 1).astype(np.float32)
        rgb = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        categories = rng.integers(0, len(pc.CATEGORY_NAMES), (height, width), dtype=np.uint8)
        return depth, rgb, categories

    pano_depth, pano_rgb, pano_cat = images(1024, 2048)
    view_depth, view_rgb, view_cat = images(1024, 1024)
    return [
        Case("panorama 2048x1024", "equirect", pano_depth, pano_rgb, pano_cat, False),
        # Metric depth, 1..20 m, as a metric depth model would give it.
        Case("pinhole 1024x1024", "planar", 1.0 + 19.0 * view_depth, view_rgb, view_cat, True),
    ]


def timed(fn: Callable[[], Any], repeats: int) -> tuple[float, float]:
    """(best, median) wall seconds; each result is dropped before the next run starts."""
    fn()  # warm up: first-call allocations, caches
    times = []
    for _ in range(repeats):
        gc.collect()
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
        del result
    return min(times), statistics.median(times)


def peak_memory(fn: Callable[[], Any]) -> tuple[int, int]:
    """(peak bytes traced during fn beyond the starting point, size of fn's result)."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        result = fn()
        peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    return peak, len(memoryview(result).cast("B"))


def memset_numpy(size: int) -> Callable[[], np.ndarray]:
    def run() -> np.ndarray:
        buffer = np.empty(size, np.uint8)
        buffer.fill(1)
        return buffer

    return run


def memset_bytearray(size: int) -> Callable[[], bytearray]:
    def run() -> bytearray:
        buffer = bytearray(size)
        ctypes.memset((ctypes.c_char * size).from_buffer(buffer), 1, size)
        return buffer

    return run


def open3d_build(case: Case) -> Callable[[], Any] | None:
    try:
        import open3d as o3d
    except ImportError:
        return None
    height, width = case.depth.shape
    depth_m = (
        case.depth
        if case.depth_is_metric
        else pc.normalized_to_metres(case.depth, near_m=1.0, far_m=10.0)
    )
    focal = (width / 2.0) / np.tan(np.radians(FOV_DEG) / 2.0)
    intrinsic = o3d.camera.PinholeCameraIntrinsic(
        width, height, focal, focal, (width - 1) / 2.0, (height - 1) / 2.0
    )
    depth_m = np.ascontiguousarray(depth_m)
    rgb = np.ascontiguousarray(case.rgb)

    def run() -> Any:
        rgbd = o3d.geometry.RGBDImage.create_from_color_and_depth(
            o3d.geometry.Image(rgb),
            o3d.geometry.Image(depth_m),
            depth_scale=1.0,
            depth_trunc=1e9,
            convert_rgb_to_intensity=False,
        )
        cloud = o3d.geometry.PointCloud.create_from_rgbd_image(rgbd, intrinsic)
        return np.asarray(cloud.points)

    return run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    print(__doc__.split("\n\n")[0])
    print(
        f"python {sys.version.split()[0]}, numpy {np.__version__}, {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.1f}; best of {args.repeats} runs (median)\n"
    )

    failures = []
    for case in make_cases():
        project = pc.project_equirect if case.mode == "equirect" else pc.project_planar
        pack = pc.pack_equirect if case.mode == "equirect" else pc.pack_planar
        inputs = (case.depth, case.rgb, case.categories)

        def packed(quantized: bool = False, inputs=inputs, pack=pack, case=case) -> memoryview:
            return pack(*inputs, cloud_id="bench", quantized=quantized, **case.kwargs)

        def via_cloud(inputs=inputs, project=project, case=case) -> bytes:
            cloud = project(*inputs, **case.kwargs)
            return pc.encode(cloud, mode=case.mode, cloud_id="bench")

        output_size = len(packed())
        contenders = {
            "pack_* (hot path)": packed,
            "project_* + encode": via_cloud,
            "pack_* quantized": lambda packed=packed: packed(quantized=True),
        }
        baselines = {
            "memset (numpy buffer)": memset_numpy(output_size),
            "memset (bytearray)": memset_bytearray(output_size),
        }
        o3d_run = open3d_build(case)
        if o3d_run is not None:
            baselines["Open3D create_from_rgbd_image"] = o3d_run

        count = case.depth.size
        print(f"== {case.name}: {count:,} points, output {output_size / 2**20:.1f} MiB ==")
        timings = {}
        for label, fn in {**contenders, **baselines}.items():
            best, median = timed(fn, args.repeats)
            timings[label] = best
            print(
                f"  {label:32s} {best * 1e3:8.2f} ms  ({median * 1e3:7.2f})  "
                f"{count / best / 1e6:7.1f} Mpts/s"
            )
        if o3d_run is None:
            print(
                "  !! open3d is not installed: the Open3D comparison is SKIPPED "
                "(pip install open3d-cpu; Debian needs libusb-1.0-0)"
            )

        hot = timings["pack_* (hot path)"]
        floor = timings["memset (numpy buffer)"]
        print("  ratios (best runs):")
        print(f"    pack_* / memset floor            {hot / floor:6.2f}x   (target <= 3x)")
        print(f"    pack_* / memset (bytearray)      {hot / timings['memset (bytearray)']:6.2f}x")
        print(f"    project+encode / memset floor    {timings['project_* + encode'] / floor:6.2f}x")
        if o3d_run is not None:
            speedup = timings["Open3D create_from_rgbd_image"] / hot
            general = timings["Open3D create_from_rgbd_image"] / timings["project_* + encode"]
            print(f"    Open3D / pack_*                  {speedup:6.2f}x   (target >= 10x)")
            print(f"    Open3D / project+encode          {general:6.2f}x")
            if speedup < 10:
                failures.append(f"{case.name}: {speedup:.1f}x faster than Open3D")
        if hot / floor > 3:
            failures.append(f"{case.name}: {hot / floor:.1f}x the memset floor")

        print("  peak extra memory (tracemalloc), as a multiple of the output size:")
        for label, fn in contenders.items():
            peak, size = peak_memory(fn)
            print(
                f"    {label:32s} {peak / 2**20:7.1f} MiB = {peak / size:4.2f}x its output"
                f"{'   (target <= 2x)' if label.startswith('pack_* (') else ''}"
            )
            if label.startswith("pack_* (") and peak / size > 2:
                failures.append(f"{case.name}: peak memory {peak / size:.2f}x the output")
        print()

    if failures:
        print("targets missed: " + "; ".join(failures))
    else:
        print("all targets met")
    return 0


if __name__ == "__main__":
    sys.exit(main())

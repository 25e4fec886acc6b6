"""Benchmark and measurement of the edge clean-up (pointcloud.edge_mask).

    python pointcloud-lib/bench/bench_edges.py [--repeats 7] [--figures DIR]

Prints, for a 2 MP (1920x1080) depth map, the time of edge_mask against a baseline from the same
run (one float32 copy of the map: the floor of any pass over it), and the gap-removed /
surface-lost scores for a range of thresholds on the synthetic scene and on the shared KITTI /
NYU ground truth (../shared/depth-gt), each blurred like a model's output (tests/test_edges.py
defines the scenes and the scoring). With --figures, writes the before/after side views used in
the README.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from pointcloud import DEFAULT_EDGE_RTOL, edge_mask, project_planar

HERE = Path(__file__).resolve().parent
SHARED = HERE.parents[2] / "shared"


def _oracle():
    tests = HERE.parent / "tests" / "test_edges.py"
    spec = importlib.util.spec_from_file_location("edge_oracle", tests)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def best_of(repeats: int, fn, *args, **kwargs) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn(*args, **kwargs)
        times.append(time.perf_counter() - started)
    return min(times)


def side_view(cloud, path: Path, size=(360, 180), depth_range=(0.0, 22.0), height=(-2.0, 3.0)):
    """A small PNG of the cloud's central columns (a 20-degree wedge through the box) seen from
    the side: depth to the right, height up."""
    image = np.full((size[1], size[0], 3), 255, np.uint8)
    z = -cloud.positions[:, 2]
    y = cloud.positions[:, 1]
    col = ((z - depth_range[0]) / (depth_range[1] - depth_range[0]) * (size[0] - 1)).astype(int)
    row = ((height[1] - y) / (height[1] - height[0]) * (size[1] - 1)).astype(int)
    inside = (col >= 0) & (col < size[0]) & (row >= 0) & (row < size[1])
    inside &= np.abs(cloud.positions[:, 0]) < 0.18 * z
    image[row[inside], col[inside]] = (40, 60, 160)
    Image.fromarray(image).save(path, optimize=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--figures", type=Path)
    args = parser.parse_args()
    oracle = _oracle()

    depth = oracle.model_blur(oracle.synthetic_scene(1080, 1920, 1500.0))
    baseline = best_of(args.repeats, np.copy, depth)
    cost = best_of(args.repeats, edge_mask, depth)
    print(f"edge_mask 1920x1080: {cost * 1e3:.1f} ms (target <= 15 ms); one copy of the map "
          f"{baseline * 1e3:.2f} ms; ratio {cost / baseline:.1f}x")

    scenes = {"synthetic": (oracle.synthetic_scene(), None)}
    for dataset, name, scale in [("nyu", "00000", 1000.0), ("nyu", "00050", 1000.0),
                                 ("nyu", "00100", 1000.0), ("kitti", "0000000005", 256.0),
                                 ("kitti", "0000000050", 256.0), ("kitti", "0000000100", 256.0)]:
        path = SHARED / "depth-gt" / dataset / f"{name}_depth.png"
        if path.exists():
            scenes[f"{dataset}/{name}"] = oracle.dense_ground_truth(path, scale)
    blurred = {key: oracle.model_blur(truth) for key, (truth, _) in scenes.items()}
    print("gap removed / surface lost (targets >= 95 % / <= 1 %), blur sigma "
          f"{oracle.BLUR_SIGMA_PX} px")
    for rtol in (0.04, 0.06, 0.08, DEFAULT_EDGE_RTOL, 0.12):
        cells = []
        for key, (truth, valid) in scenes.items():
            removed, lost = oracle.score(truth, blurred[key], edge_mask(blurred[key], rtol=rtol),
                                         valid)
            cells.append(f"{key} {removed:.1%}/{lost:.2%}")
        print(f"  rtol {rtol:.2f}: " + "  ".join(cells))

    if args.figures:
        args.figures.mkdir(parents=True, exist_ok=True)
        scene = oracle.model_blur(oracle.synthetic_scene(240, 320, 250.0))
        rgb = np.zeros((*scene.shape, 3), np.uint8)
        for name, rtol in (("edges-before.png", None), ("edges-after.png", DEFAULT_EDGE_RTOL)):
            cloud = project_planar(scene, rgb, depth_is_metric=True, fov_deg=65.0, edge_rtol=rtol)
            side_view(cloud, args.figures / name)
        print(f"figures in {args.figures}")


if __name__ == "__main__":
    sys.exit(main())

"""Panorama depth: perspective views vs equirectangular tiling on the geometric oracle.

    python depth-service/bench/bench_panorama.py [--height 512]

Runs the synthetic room of tests/test_panorama.py (``scene_dev.panorama_oracle``: known ray
distances) through both panorama paths with the same perspective-model fake (a random disparity
scale and shift per call) and prints the worst per-latitude relative ray-distance error after one
global scale (target <= 2 % for the perspective path), the poles and the seam, and each path's
wall time (the fake's own work included, so the times compare the paths' overheads only
roughly).
"""

from __future__ import annotations

import argparse
import asyncio
import time

import numpy as np

from depth_service import panorama
from depth_service.panorama import PanoramaMode, ViewLayout
from scene_dev import panorama_oracle as oracle


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--height", type=int, default=512)
    parser.add_argument("--native", type=int, default=518, help="the fake model's input side")
    args = parser.parse_args()
    image, truth = oracle.render_panorama(args.height, 2 * args.height)
    print(f"panorama {2 * args.height}x{args.height}, model input side {args.native}")
    cases = [("perspective cube", PanoramaMode.PERSPECTIVE, ViewLayout.CUBE),
             ("perspective icosahedron", PanoramaMode.PERSPECTIVE, ViewLayout.ICOSAHEDRON),
             ("equirect tiling (before)", PanoramaMode.EQUIRECT, ViewLayout.CUBE)]
    for name, mode, layout in cases:
        fov = (panorama.ICOSAHEDRON_FOV_DEG if layout is ViewLayout.ICOSAHEDRON
               else panorama.CUBE_FOV_DEG)
        fake = oracle.PerspectiveFake(native=args.native, fov_deg=fov, seed=1)
        started = time.perf_counter()
        distance, estimate = await oracle.estimate_distance(
            image, fake, panorama_mode=mode, panorama_views=layout)
        wall = time.perf_counter() - started
        rows = oracle.errors_by_latitude(distance, truth)
        scale = np.median(truth / distance)
        seam = float((np.abs(scale * distance[:, [0, -1]] - truth[:, [0, -1]])
                      / truth[:, [0, -1]]).mean())
        print(f"  {name:26s} worst latitude {rows.max():7.2%}  mean {rows.mean():7.2%}  "
              f"poles {rows[0]:.2%}/{rows[-1]:.2%}  seam {seam:.2%}  model calls {fake.calls:3d}"
              f"  {wall:6.2f} s  (merge {estimate.timing_ms.get('merge', 0):.0f} ms)")


if __name__ == "__main__":
    asyncio.run(main())

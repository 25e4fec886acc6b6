"""Meshes from the depth grid: size and build time of a 1 MP scene, as the server makes them.

    python pointcloud-lib/bench/bench_mesh.py [--repeats 3]

A 1024 x 1024 photo-like scene (a box before a sloping wall, blurred like a model's depth and
edge-cleaned, random colours) is packed as the orchestrator stores it; then, as the
``scene.glb?geometry=mesh`` and ``pointcloud.ply?geometry=mesh`` routes do, the mesh is rebuilt
from the stored cloud (``mesh_from_cloud(decode(buffer))``) and written. Prints the counts, the
bytes of each file (per vertex too) and the median build times, beside the points' GLB of the
same cloud built in the same run (the baseline a mesh is compared with).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from pointcloud import DEFAULT_EDGE_RTOL, decode, mesh_from_cloud, pack_planar, to_ply
from pointcloud.glb import to_glb
from scene_dev import edge_scenes

SIDE = 1024


def median_time(fn, repeats: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    depth = edge_scenes.degrade(edge_scenes.synthetic_scene(SIDE, SIDE, 800.0), 1.5)[0]
    rgb = np.random.default_rng(0).integers(0, 256, (*depth.shape, 3), dtype=np.uint8)
    stored = pack_planar(depth, rgb, cloud_id="m", depth_is_metric=True,
                         focal_length_px=800.0, edge_rtol=DEFAULT_EDGE_RTOL)
    cloud = decode(stored)
    mesh_s, mesh = median_time(lambda: mesh_from_cloud(decode(stored)), args.repeats)
    glb_s, glb = median_time(lambda: to_glb(decode(stored), geometry="mesh"), args.repeats)
    ply_s, ply = median_time(lambda: to_ply(mesh_from_cloud(decode(stored))), args.repeats)
    points_s, points = median_time(lambda: to_glb(decode(stored)), args.repeats)
    print(f"{SIDE}x{SIDE} scene, {cloud.count} points stored; median of {args.repeats}")
    print(f"mesh: {mesh.vertex_count} vertices, {mesh.triangle_count} triangles "
          f"({mesh.triangle_count / mesh.vertex_count:.2f} a vertex), {mesh.indices.dtype} "
          f"indices; mesh_from_cloud {mesh_s:.2f} s")
    print("| file | bytes | bytes a vertex | built from the stored cloud |")
    print("|---|---|---|---|")
    for name, data, seconds in (("scene.glb?geometry=mesh", glb, glb_s),
                                ("pointcloud.ply?geometry=mesh", ply, ply_s),
                                ("scene.glb (points, the baseline)", points, points_s)):
        print(f"| {name} | {len(data) / 1e6:.1f} MB | {len(data) / mesh.vertex_count:.1f} | "
              f"{seconds:.2f} s |")
    print(f"mesh GLB / points GLB: {len(glb) / len(points):.2f}x the bytes, "
          f"{glb_s / points_s:.1f}x the time")


if __name__ == "__main__":
    main()

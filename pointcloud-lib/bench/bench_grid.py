"""Benchmark: the grid variant of PCLD against every other way of shipping the same cloud.

    python pointcloud-lib/bench/bench_grid.py [--repeats 5] [--no-browser] [--shared DIR]

Scenes: the shared ground-truth photos (../shared/depth-gt: 3 NYU, 3 KITTI; their own metric
depth and intrinsics; KITTI's LiDAR depth is sparse, so bytes are also given per *pixel*) and a
2048x1024 panorama (a real photo resized to 2:1, with the ray distances of a box-shaped room:
model-like smooth depth with creases). For each format, in one run:

  bytes        total, per point, per pixel of the grid
  encode ms    on the server, from depth + colour + categories (median of --repeats): wall
               time, and CPU time of the process (all threads): on a loaded machine the wall
               time mostly measures the queue for a core, the CPU time stays the work done
  decode ms    in headless Chromium (Debian's, driven by playwright), the fetch not counted
               (one warm-up, then the median of --repeats); from the bytes to typed arrays a
               renderer uploads; wall time, and the renderer process's CPU time per decode
               (Chrome DevTools' Performance.getMetrics ProcessTime: all its threads, the
               image decoders' included)
  transfer     the bytes at 20 and 100 Mbit/s

Formats:

  pcld v1            pack_planar / pack_equirect, float32 positions
  pcld v1 quantised  uint16 positions
  pcld v1 + gzip     v1 gzipped at level 1 (the orchestrator's HTTP setting) and 6; the browser
                     side decodes with DecompressionStream (what the network stack does)
  ply                binary PLY (to_ply); the browser parses it with a DataView loop
  glTF meshopt       gltfpack -cc (KHR_mesh_quantization + EXT_meshopt_compression) on a GLB of
                     the points; encode time is the gltfpack CLI's wall time (node start
                     included, about 0.1 s); decoded with meshoptimizer's decoder
  draco              DracoPy (14-bit positions, Draco's default, and 16-bit); decoded with the
                     draco3d WASM decoder (positions and colours; Draco keeps no segment here)
  grid               pack_grid (JPEG q96 4:4:4 + RGB PNG level 1); decodePointCloudAsync

Quality of the grid at the defaults, per scene: colour PSNR against the source and the largest
relative depth error (target <= 0.1 %), and the point count against v1 (must be equal).
The npm baselines live in bench/js (package.json; scripts/bench.sh runs `npm ci` there).
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

import pointcloud as pc
from scene_dev import pcld_chromium as chromium

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
SHARED = ROOT.parent / "shared"
JS_DIR = HERE / "js"
RATES_MBIT = (20, 100)


@dataclass
class Scene:
    name: str
    mode: str
    depth: np.ndarray  # metric
    rgb: np.ndarray
    categories: np.ndarray
    projection: dict


@dataclass
class Result:
    name: str
    data: bytes
    encode_ms: float | None
    kind: str  # the browser decoder to use
    note: str = ""
    encode_cpu_ms: float | None = None
    decode_ms: float | None = None
    decode_cpu_ms: float | None = None
    decode_error: str | None = None
    extra: dict = field(default_factory=dict)


def load_scenes(shared: Path) -> list[Scene]:
    scenes = []
    for dataset, scale in (("nyu", 1000.0), ("kitti", 256.0)):
        folder = shared / "depth-gt" / dataset
        if not folder.is_dir():
            print(f"NOTE: {folder} is missing; the {dataset} scenes are skipped")
            continue
        intrinsics = json.loads((folder / "metric3d_test_annotations.json").read_text())
        fx, fy, cx, cy = intrinsics["files"][0]["cam_in"]
        for depth_path in sorted(folder.glob("*_depth.png")):
            stem = depth_path.name.removesuffix("_depth.png")
            rgb_path = next(folder.glob(f"{stem}_rgb.*"))
            rgb = np.asarray(Image.open(rgb_path).convert("RGB"))
            depth = np.asarray(Image.open(depth_path)).astype(np.float32) / scale
            # A category map with regions, as the segment service gives (bands by depth).
            categories = np.digitize(depth, [0.5, 2, 4, 8, 16]).astype(np.uint8)
            scenes.append(
                Scene(
                    f"{dataset} {stem}",
                    "planar",
                    depth,
                    rgb,
                    categories,
                    {
                        "depth_is_metric": True,
                        "focal_length_px": (fx, fy),
                        "principal_point": (cx, cy),
                    },
                )
            )
    scenes.append(panorama(shared))
    return scenes


def panorama(shared: Path) -> Scene:
    height, width = 1024, 2048
    photo = shared / "images" / "outdoor_colosseum_sky.jpg"
    if photo.is_file():
        rgb = np.asarray(Image.open(photo).convert("RGB").resize((width, height), Image.BICUBIC))
    else:
        rows, cols = np.mgrid[0:height, 0:width]
        rgb = np.stack([cols % 256, rows % 256, (cols + rows) % 256], -1).astype(np.uint8)
    # Ray distance to the walls of an 8 x 3 x 6 m room around the viewer (1.6 m above the floor).
    longitude = ((np.arange(width) + 0.5) / width - 0.5) * 2 * math.pi
    latitude = (0.5 - (np.arange(height) + 0.5) / height) * math.pi
    dx = np.cos(latitude)[:, None] * np.sin(longitude)[None, :]
    dy = np.sin(latitude)[:, None] * np.ones(width)[None, :]
    dz = -np.cos(latitude)[:, None] * np.cos(longitude)[None, :]
    with np.errstate(divide="ignore"):
        tx = np.where(dx != 0, np.where(dx > 0, 4.0, 4.0) / np.abs(dx), np.inf)
        ty = np.where(dy > 0, 1.4 / np.abs(dy), np.where(dy < 0, 1.6 / np.abs(dy), np.inf))
        tz = np.where(dz != 0, 3.0 / np.abs(dz), np.inf)
    depth = np.minimum(np.minimum(tx, ty), tz).astype(np.float32)
    categories = np.where(dy < -0.5, 3, np.where(dy > 0.6, 2, 5)).astype(np.uint8)
    return Scene(
        "panorama 2048x1024", "equirect", depth, rgb, categories, {"depth_is_metric": True}
    )


def timed(fn, repeats: int):
    """(result, median wall ms, median CPU ms of this process)."""
    walls, cpus, result = [], [], None
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        result = fn()
        walls.append((time.perf_counter() - wall) * 1000)
        cpus.append((time.process_time() - cpu) * 1000)
    return result, statistics.median(walls), statistics.median(cpus)


def median_ms(fn, repeats: int):
    """(result, median wall ms): for the baselines' steps."""
    result, wall, _ = timed(fn, repeats)
    return result, wall


def encode_all(
    scene: Scene, repeats: int, gltfpack: list[str] | None, draco_max_points: int = 0
) -> tuple[list[Result], dict]:
    pack = pc.pack_planar if scene.mode == "planar" else pc.pack_equirect
    args = (scene.depth, scene.rgb, scene.categories)
    v1, v1_ms, v1_cpu = timed(lambda: bytes(pack(*args, cloud_id="b", **scene.projection)), repeats)
    quantized, q_ms = median_ms(
        lambda: bytes(pack(*args, cloud_id="b", quantized=True, **scene.projection)), repeats
    )
    results = [
        Result("pcld v1", v1, v1_ms, "pcld", encode_cpu_ms=v1_cpu),
        Result("pcld v1 quantised", quantized, q_ms, "pcld"),
    ]
    for level in (1, 6):
        zipped, ms = median_ms(lambda level=level: gzip.compress(v1, level), repeats)
        results.append(Result(f"pcld v1 + gzip {level}", zipped, v1_ms + ms, "gzip"))
    cloud = pc.decode(v1)
    ply, ms = median_ms(lambda: pc.to_ply(cloud), repeats)
    results.append(Result("ply (binary)", ply, v1_ms + ms, "ply"))
    if gltfpack:
        results.append(gltf_meshopt(cloud, gltfpack, v1_ms))
    results.extend(draco(cloud, repeats, v1_ms, draco_max_points))
    grid, grid_ms, grid_cpu = timed(
        lambda: pc.pack_grid(*args, mode=scene.mode, cloud_id="b", **scene.projection), repeats
    )
    results.append(Result("grid (jpeg q96 + png)", grid, grid_ms, "grid", encode_cpu_ms=grid_cpu))
    return results, quality(scene, v1, grid)


def quality(scene: Scene, v1: bytes, grid: bytes) -> dict:
    a, b = pc.decode(v1), pc.decode(grid)
    depth_of = (
        (lambda p: -p[:, 2].astype(np.float64))
        if scene.mode == "planar"
        else (lambda p: np.linalg.norm(p.astype(np.float64), axis=1))
    )
    relative = float(np.abs(depth_of(b.positions) / depth_of(a.positions) - 1).max())
    header = b.header
    bound = pc.relative_error_bound(header["depth"]["near"], header["depth"]["far"])
    colour = np.mean((a.colors.astype(np.float64) - b.colors) ** 2)
    psnr = 10 * math.log10(255**2 / colour) if colour else math.inf
    return {"points": (a.count, b.count), "relative": relative, "bound": bound, "psnr": psnr}


def write_glb(cloud: pc.PointCloud, path: Path) -> None:
    """A GLB with one POINTS primitive: float32 POSITION and normalised uint8 COLOR_0."""
    count = cloud.count
    positions = np.ascontiguousarray(cloud.positions, "<f4").tobytes()
    colors = np.concatenate([cloud.colors, np.full((count, 1), 255, np.uint8)], 1).tobytes()
    binary = positions + colors
    lo, hi = cloud.bounds()
    document = {
        "asset": {"version": "2.0"},
        "scene": 0,
        "scenes": [{"nodes": [0]}],
        "nodes": [{"mesh": 0}],
        "meshes": [{"primitives": [{"attributes": {"POSITION": 0, "COLOR_0": 1}, "mode": 0}]}],
        "buffers": [{"byteLength": len(binary)}],
        "bufferViews": [
            {"buffer": 0, "byteOffset": 0, "byteLength": len(positions), "target": 34962},
            {"buffer": 0, "byteOffset": len(positions), "byteLength": len(colors), "target": 34962},
        ],
        "accessors": [
            {
                "bufferView": 0,
                "componentType": 5126,
                "count": count,
                "type": "VEC3",
                "min": lo.tolist(),
                "max": hi.tolist(),
            },
            {
                "bufferView": 1,
                "componentType": 5121,
                "normalized": True,
                "count": count,
                "type": "VEC4",
            },
        ],
    }
    raw = json.dumps(document).encode()
    raw += b" " * (-len(raw) % 4)
    binary += b"\0" * (-len(binary) % 4)
    total = 12 + 8 + len(raw) + 8 + len(binary)
    with path.open("wb") as out:
        out.write(b"glTF" + np.array([2, total], "<u4").tobytes())
        out.write(np.array([len(raw), 0x4E4F534A], "<u4").tobytes() + raw)
        out.write(np.array([len(binary), 0x004E4942], "<u4").tobytes() + binary)


def gltf_meshopt(cloud: pc.PointCloud, gltfpack: list[str], v1_ms: float) -> Result:
    with tempfile.TemporaryDirectory() as folder:
        source, packed = Path(folder) / "in.glb", Path(folder) / "out.glb"
        started = time.perf_counter()
        write_glb(cloud, source)
        completed = subprocess.run(
            [*gltfpack, "-i", str(source), "-o", str(packed), "-cc"],
            capture_output=True,
            text=True,
            check=False,
        )
        ms = (time.perf_counter() - started) * 1000
        if completed.returncode:
            return Result(
                "glTF meshopt (gltfpack -cc)",
                b"",
                None,
                "gltf",
                note=f"gltfpack failed: {completed.stderr.strip()[:200]}",
            )
        return Result(
            "glTF meshopt (gltfpack -cc)",
            packed.read_bytes(),
            v1_ms + ms,
            "gltf",
            note="no segments; encode = CLI wall time",
        )


def draco(cloud: pc.PointCloud, repeats: int, v1_ms: float, max_points: int) -> list[Result]:
    try:
        import DracoPy
    except ImportError:
        return [Result("draco", b"", None, "draco", note="DracoPy is not installed: skipped")]
    if max_points and cloud.count > max_points:
        return [Result("draco", b"", None, "draco", note="skipped: over --draco-max-points")]
    out = []
    for bits in (14, 16):
        data, ms = median_ms(
            lambda bits=bits: DracoPy.encode(
                cloud.positions, quantization_bits=bits, compression_level=1, colors=cloud.colors
            ),
            repeats,
        )
        out.append(
            Result(f"draco {bits}-bit (DracoPy)", data, v1_ms + ms, "draco", note="no segments")
        )
    return out


def browser_decode(results_by_scene: dict[str, list[Result]], repeats: int) -> None:
    missing = chromium.chromium_missing()
    if missing:
        print(f"NOTE: no browser decode times: {missing}")
        return
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        shutil.copy(pc.js_decoder_path(), root / "pcld.js")
        shutil.copy(JS_DIR / "bench_page.html", root / "index.html")
        if (JS_DIR / "node_modules").is_dir():
            (root / "node_modules").symlink_to(JS_DIR / "node_modules")
        files = []
        for results in results_by_scene.values():
            for result in results:
                if result.data:
                    name = f"{len(files)}.bin"
                    (root / name).write_bytes(result.data)
                    files.append((name, result))
        with chromium.serve_folder(root) as url, sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=str(chromium.CHROMIUM), args=chromium.FLAGS
            )
            try:
                page = browser.new_page()
                devtools = page.context.new_cdp_session(page)
                devtools.send("Performance.enable")

                def renderer_cpu_s() -> float:
                    metrics = devtools.send("Performance.getMetrics")["metrics"]
                    return next(m["value"] for m in metrics if m["name"] == "ProcessTime")

                page.goto(url + "index.html")
                page.wait_for_function("window.benchReady === true", timeout=30_000)
                for name, result in files:
                    try:
                        page.evaluate("([f, k]) => benchLoad(f, k)", [name, result.kind])
                        before = renderer_cpu_s()
                        got = json.loads(page.evaluate("(n) => benchDecode(n)", repeats))
                        cpu_ms = (renderer_cpu_s() - before) * 1000 / repeats
                        result.decode_ms = statistics.median(got["ms"])
                        result.decode_cpu_ms = cpu_ms
                        result.extra["browser_count"] = got["count"]
                    except Exception as exc:  # reported in the table, not fatal
                        result.decode_error = str(exc).splitlines()[0][:120]
            finally:
                browser.close()


def report(scene: Scene, results: list[Result], quality_info: dict) -> None:
    pixels = scene.depth.size
    points = quality_info["points"][0]
    print(
        f"\n### {scene.name}: {scene.depth.shape[1]}x{scene.depth.shape[0]} = {pixels:,} "
        f"pixels, {points:,} points ({points / pixels:.0%} valid)"
    )
    base = results[0]
    print(
        f"{'format':32} {'bytes':>11} {'B/point':>8} {'B/pixel':>8} {'vs v1':>6} "
        f"{'encode ms':>10} {'enc CPU':>8} {'decode ms':>10} {'dec CPU':>8} "
        + " ".join(f"{f'@{r} Mbit/s':>11}" for r in RATES_MBIT)
        + "  note"
    )
    for r in results:
        if not r.data:
            print(f"{r.name:32} {'-':>11}  {r.note}")
            continue
        size = len(r.data)
        decode = (
            f"{r.decode_ms:10.1f}"
            if r.decode_ms is not None
            else f"{'error' if r.decode_error else '-':>10}"
        )
        transfer = " ".join(f"{size * 8 / (rate * 1e6) * 1000:9.0f}ms" for rate in RATES_MBIT)
        encode = f"{r.encode_ms:10.1f}" if r.encode_ms is not None else f"{'-':>10}"
        encode += f" {r.encode_cpu_ms:8.1f}" if r.encode_cpu_ms is not None else f" {'-':>8}"
        decode += f" {r.decode_cpu_ms:8.1f}" if r.decode_cpu_ms is not None else f" {'-':>8}"
        note = r.note + (f" decode error: {r.decode_error}" if r.decode_error else "")
        print(
            f"{r.name:32} {size:11,} {size / points:8.3f} {size / pixels:8.3f} "
            f"{size / len(base.data):6.3f} {encode} {decode} {transfer}  {note}"
        )
    grid = next(r for r in results if r.kind == "grid")
    in_browser = grid.extra.get("browser_count")
    print(
        f"grid quality: points v1 {quality_info['points'][0]:,} / grid "
        f"{quality_info['points'][1]:,}"
        f"{'' if in_browser is None else f' / chromium {in_browser:,}'}"
        f"; depth error max {quality_info['relative']:.2e} (bound {quality_info['bound']:.2e}, "
        f"target 1e-3); colour PSNR {quality_info['psnr']:.1f} dB (target 38)"
    )
    others = [r for r in results if r.data and r.kind != "grid"]
    smallest = min(others, key=lambda r: len(r.data))
    ratio = len(grid.data) / len(smallest.data)
    print(
        f"grid vs smallest baseline ({smallest.name}): {ratio:.2f}x the bytes"
        f" ({len(grid.data) / points:.2f} against {len(smallest.data) / points:.2f} B/point); "
        f"grid encode / v1 pack: {grid.encode_ms / base.encode_ms:.1f}x wall, "
        f"{grid.encode_cpu_ms / base.encode_cpu_ms:.1f}x CPU"
        + (
            f"; grid decode / v1 decode: {grid.decode_ms / base.decode_ms:.1f}x"
            if grid.decode_ms and base.decode_ms
            else ""
        )
    )
    if points == pixels:  # a dense grid: the speed targets (150 ms each way)
        print(
            f"targets (150 ms): grid encode {grid.encode_ms:.0f} ms wall / "
            f"{grid.encode_cpu_ms:.0f} ms CPU"
            + (
                f"; Chromium decode {grid.decode_ms:.0f} ms wall / "
                f"{grid.decode_cpu_ms:.0f} ms renderer CPU"
                if grid.decode_ms is not None
                else ""
            )
        )


def gltfpack_command() -> list[str] | None:
    cli = JS_DIR / "node_modules" / "gltfpack" / "cli.js"
    node = shutil.which("node")
    if cli.is_file() and node:
        return [node, str(cli)]
    print("NOTE: gltfpack is not installed (npm ci in pointcloud-lib/bench/js): glTF skipped")
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-browser", action="store_true")
    parser.add_argument(
        "--draco-max-points",
        type=int,
        default=0,
        help="skip Draco above this many points (its panorama encode takes minutes); 0: never",
    )
    parser.add_argument("--only", help="scenes whose name contains one of these (comma-separated)")
    parser.add_argument(
        "--shared",
        type=Path,
        default=SHARED,
        help="the shared data folder (default: beside the checkout)",
    )
    options = parser.parse_args()
    wanted = options.only.split(",") if options.only else None
    scenes = [
        s for s in load_scenes(options.shared) if not wanted or any(w in s.name for w in wanted)
    ]
    gltfpack = gltfpack_command()
    encoded = {}
    for scene in scenes:
        encoded[scene.name] = encode_all(scene, options.repeats, gltfpack, options.draco_max_points)
    if not options.no_browser:
        browser_decode({name: results for name, (results, _) in encoded.items()}, options.repeats)
    for scene in scenes:
        results, quality_info = encoded[scene.name]
        report(scene, results, quality_info)
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python
"""Depth-service benchmark: tiled inference against the stock transformers pipeline.

    python depth-service/bench/bench_depth.py                 # Depth-Anything-V2-Small, full size
    python depth-service/bench/bench_depth.py --variant large  # V2-Large architecture
    python depth-service/bench/bench_depth.py --model DIR_OR_HUB_ID --batch-sizes 1,2,4,8

No pretrained weights can be had here, so by default the model is the real Depth Anything V2
architecture at its real size and native resolution (518 px) with random weights: speed does not
depend on the weights. Every figure is printed with the device, model and thread count, and every
ratio is against a baseline measured in the same run:

- per image and per megapixel: our single pass and our tiled pass vs
  ``transformers.pipeline("depth-estimation")`` (one pass, the same model);
- tiling overhead: tiled time / (the same global and tile forward passes run alone, batch 1,
  right after), i.e. what tiling costs beyond the forward passes themselves (target <= 1.15);
  the literal ratio tiled time / (tiles x median single-tile forward) is printed beside it (it
  also counts the global pass, so it sits above the overhead by about 1 + 1/tiles);
- a batch-size sweep of the tile passes;
- the share of preprocessing in a tile pass (why no preprocessing thread pool).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import statistics
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from depth_service import tiling
from depth_service.backends import DepthBackend, load_backend
from depth_service.model import DepthModel
from depth_service.pipeline import PANORAMA_PAD_FRACTION, DepthPipeline, EstimateOptions
from depth_service.settings import Settings, TileMode
from scene_dev.full_size_models import DEPTH_ANYTHING, build_depth_anything
from scene_rpc.ml.torch_runtime import configure_threads, select_device

REPO = Path(__file__).resolve().parents[2]
SHARED_IMAGES = REPO.parent / "shared" / "images"

def load_images() -> dict[str, np.ndarray]:
    images = {}
    for name in ("animal_cat_chelsea.png", "indoor_room.jpg", "outdoor_colosseum_sky.jpg"):
        path = SHARED_IMAGES / name
        if path.exists():
            images[path.stem] = np.asarray(Image.open(path).convert("RGB"))
    # A 2:1 panorama-sized input (4096 x 2048 is the generator's size; 2048 x 1024 keeps CPU
    # runs short): the colosseum photo stretched, or noise where the shared photos are missing.
    if "outdoor_colosseum_sky" in images:
        base = Image.fromarray(images["outdoor_colosseum_sky"])
        images["panorama_2048x1024"] = np.asarray(base.resize((2048, 1024), Image.BICUBIC))
    else:
        rng = np.random.default_rng(0)
        images["panorama_2048x1024"] = rng.integers(0, 256, (1024, 2048, 3), dtype=np.uint8)
    return images


@dataclass(frozen=True)
class Cost:
    """Wall seconds, and CPU seconds of this process (all its threads). On a shared machine the
    wall time swings with other work; the CPU time stays close to the work actually done."""

    wall: float
    cpu: float

    def __add__(self, other: Cost) -> Cost:
        return Cost(self.wall + other.wall, self.cpu + other.cpu)

    @staticmethod
    def median(costs: list[Cost]) -> Cost:
        return Cost(statistics.median(c.wall for c in costs),
                    statistics.median(c.cpu for c in costs))


def measure(function) -> tuple[Cost, object]:
    wall, cpu = time.perf_counter(), time.process_time()
    result = function()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return Cost(time.perf_counter() - wall, time.process_time() - cpu), result


async def measure_async(make_coroutine) -> tuple[Cost, object]:
    wall, cpu = time.perf_counter(), time.process_time()
    result = await make_coroutine()
    return Cost(time.perf_counter() - wall, time.process_time() - cpu), result


def timed(function, repeats: int, *, min_total_s: float = 1.0) -> Cost:
    """Median cost over at least ``repeats`` runs and ``min_total_s`` seconds (after one warm-up
    run), so that fast functions are not timed from one noisy run."""
    function()
    costs: list[Cost] = []
    while len(costs) < repeats or sum(c.wall for c in costs) < min_total_s:
        costs.append(measure(function)[0])
    return Cost.median(costs)


async def timed_estimate(model: DepthModel, image: np.ndarray, options: EstimateOptions,
                         repeats: int, *, warm_up: bool = True):
    """(median cost, last result) of our pipeline, end to end."""
    if warm_up:
        await estimate(model, image, options)
    costs = []
    for _ in range(repeats):
        cost, result = await measure_async(lambda: estimate(model, image, options))
        costs.append(cost)
    return Cost.median(costs), result


async def estimate(model: DepthModel, image: np.ndarray, options: EstimateOptions):
    events = [event async for event in model.estimate(image, options)]
    return events[-1]


def forward_replay(backend: DepthBackend, image: np.ndarray,
                   panorama: bool) -> tuple[Cost, list[Cost]]:
    """Costs of the global forward pass and of each tile's forward pass (batch 1), run alone."""
    grid = DepthPipeline(backend, None, batch_size=1, max_tiles=256).plan(
        *image.shape[:2], EstimateOptions(tile_mode=TileMode.FORCED, panorama=panorama))
    pad = round(image.shape[1] * PANORAMA_PAD_FRACTION) if panorama else 0
    padded = tiling.pad_wrap(image, pad)
    global_cost, _ = measure(lambda: backend.predict([padded]))
    tile_costs = []
    for tile in grid.tiles:
        crop = np.ascontiguousarray(tiling.crop(image, tile, wrap=grid.wrap))
        tile_costs.append(measure(lambda crop=crop: backend.predict([crop]))[0])
    return global_cost, tile_costs


def model_around(backend: DepthBackend, device: torch.device, **settings) -> DepthModel:
    """A DepthModel serving the already loaded backend (no reload per configuration)."""
    return DepthModel(Settings(model=backend.model_id, fallback_model="", device=str(device),
                               tile_max_count=256, **settings), loader=lambda *_: backend)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="hub id or local directory (default: random weights)")
    parser.add_argument("--variant", choices=[v.lower() for v in DEPTH_ANYTHING], default="small")
    parser.add_argument("--batch-sizes", default="1,2,4")
    parser.add_argument("--repeats", type=int, default=3,
                        help="runs per figure (tiled runs and the sweep: repeats - 2, at least 1)")
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    warnings.filterwarnings("ignore")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()

    threads = configure_threads(args.threads)
    device, dtype = select_device("auto")
    with tempfile.TemporaryDirectory() as tmp:
        if args.model:
            model_path, model_name = args.model, args.model
        else:
            model_path = str(Path(tmp) / f"depth-anything-v2-{args.variant}")
            # The architecture's published config (scene_dev.full_size_models), random weights.
            torch.manual_seed(0)
            build_depth_anything(args.variant.title(), Path(model_path))
            model_name = f"Depth-Anything-V2-{args.variant.title()} architecture, random weights"
        return asyncio.run(bench(model_path, model_name, device, dtype, threads, args))


async def bench(model_path: str, model_name: str, device: torch.device, dtype: torch.dtype,
                threads: int, args) -> int:
    from transformers import pipeline

    tag = (f"[device={device} dtype={str(dtype).removeprefix('torch.')} threads={threads} "
           f"model={model_name}]")
    print(f"depth-service benchmark {tag}")
    print(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (other work "
          f"on the machine slows every figure; ratios within this run stay comparable)")
    backend: DepthBackend = load_backend(model_path, device, dtype)
    stock = pipeline("depth-estimation", model=model_path, device=device, dtype=dtype)
    images = load_images()
    repeats = args.repeats

    # Forward-only reference: one tile at the native input size, batch 1.
    native = backend.native_side
    tile = np.ascontiguousarray(images["panorama_2048x1024"][:native, :native])
    tile_cost = timed(lambda: backend.predict([tile]), repeats)
    print(f"single-tile forward ({native}x{native}, batch 1): {tile_cost.wall * 1000:.0f} ms wall, "
          f"{tile_cost.cpu * 1000:.0f} ms CPU  {tag}")
    processor = getattr(backend, "processor", None)
    if processor is not None:
        batch = [tile] * 4
        preprocess = timed(lambda: processor(images=batch, return_tensors="pt",
                                             input_data_format="channels_last"), repeats)
        print(f"preprocessing share of a tile pass: {preprocess.cpu / 4 / tile_cost.cpu:.1%} of "
              f"its CPU time ({preprocess.wall / 4 * 1000:.1f} ms wall per tile)  {tag}")

    print()
    print("per image, wall seconds (medians):")
    print(f"{'image':<24}{'size':>11}{'MP':>6}{'tiles':>6}{'stock':>8}{'single':>8}{'tiled':>8}"
          f"{'tiled/stock':>12}{'tiled s/MP':>11}  overhead wall / CPU  literal CPU")
    overheads: list[float] = []
    model = model_around(backend, device)
    for name, image in images.items():
        height, width = image.shape[:2]
        megapixels = height * width / 1e6
        pil = Image.fromarray(image)
        stock_cost = timed(lambda pil=pil: stock(pil), repeats)
        panorama = name.startswith("panorama")
        single_cost, _ = await timed_estimate(
            model, image, EstimateOptions(tile_mode=TileMode.OFF, panorama=panorama), repeats)
        # Tiled runs are the long ones: fewer of them; the single passes warmed everything up.
        tiled_cost, result = await timed_estimate(
            model, image, EstimateOptions(tile_mode=TileMode.FORCED, panorama=panorama),
            max(1, repeats - 2), warm_up=False)
        tiles = result.tile_count
        row = (f"{name:<24}{f'{width}x{height}':>11}{megapixels:>6.2f}{tiles:>6}"
               f"{stock_cost.wall:>8.2f}{single_cost.wall:>8.2f}{tiled_cost.wall:>8.2f}"
               f"{tiled_cost.wall / stock_cost.wall:>12.2f}{tiled_cost.wall / megapixels:>11.2f}")
        if tiles:
            # The same forward passes alone, right after the tiled run: the global pass and
            # every tile, one per pass.
            global_cost, tile_costs = forward_replay(backend, image, panorama)
            forwards = sum(tile_costs, global_cost)
            overhead_cpu = tiled_cost.cpu / forwards.cpu
            overheads.append(overhead_cpu)
            literal = tiled_cost.cpu / (tiles * statistics.median(c.cpu for c in tile_costs))
            row += (f"  {tiled_cost.wall / forwards.wall:>8.3f} / {overhead_cpu:.3f}"
                    f"  {literal:>11.3f}")
        else:
            row += "  (no larger than one tile: single pass)"
        print(row)
    model.close()
    print(f"stock = transformers.pipeline('depth-estimation') single pass; single = ours, tiling "
          f"off; tiled = ours, forced, {native} px tiles, 25% overlap, batch "
          f"{model.batch_size}; overhead = tiled / (its global + tile forward passes run alone); "
          f"literal = tiled / (tiles x median tile forward)  {tag}")
    if overheads:
        worst = max(overheads)
        verdict = "meets" if worst <= 1.15 else "MISSES"
        print(f"tiling overhead (CPU time): worst {worst:.3f}, mean "
              f"{statistics.mean(overheads):.3f} ({verdict} the 1.15 target)  {tag}")

    print()
    sweep_name = "outdoor_colosseum_sky" if "outdoor_colosseum_sky" in images else \
        "panorama_2048x1024"
    sweep_image = images[sweep_name]
    options = EstimateOptions(tile_mode=TileMode.FORCED, panorama=sweep_name.startswith("pano"))
    sizes = [int(size) for size in args.batch_sizes.split(",")]
    print(f"batch-size sweep, whole tiled request on {sweep_name}  {tag}")
    baseline = None
    for batch_size in sizes:
        model = model_around(backend, device, batch_size=batch_size)
        cost, result = await timed_estimate(model, sweep_image, options, max(1, repeats - 2),
                                            warm_up=False)
        model.close()
        baseline = baseline or cost
        print(f"  batch {batch_size:>2}: {result.tile_count} tiles, {cost.wall:6.2f} s wall, "
              f"{cost.cpu:6.2f} s CPU ({baseline.wall / cost.wall:.2f}x / "
              f"{baseline.cpu / cost.cpu:.2f}x the speed of batch {sizes[0]})  {tag}")
    print(f"load average at end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    return 0


if __name__ == "__main__":
    sys.exit(main())

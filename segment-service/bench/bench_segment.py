#!/usr/bin/env python
"""Segment-service benchmark: time per image per stage for 1024x1024 and 2048x1024 in every
SEG_MODE, fusion overhead against model time, and a points_per_batch sweep.

    python segment-service/bench/bench_segment.py [--quick] [--no-full-size]

Every figure is printed with the device, models and thread count it was measured with, and as a
ratio against a baseline measured in the same run. Three kinds of model are used:

* the tiny random-weight models (``make tiny-models``): the whole service path, every mode and
  size, fast enough for repeated runs;
* full-size architectures with random weights (sam2.1-hiera-tiny's config, MaskFormer with
  maskformer-swin-tiny-ade's layout), built here because no pretrained weights can be downloaded:
  honest compute per stage, though random weights filter out all or most masks;
* synthetic masks of SAM-like sizes, to time fusion with a realistic mask count.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
TINY_MODELS = ROOT / ".cache" / "tiny-models"
PHOTO = ROOT.parent / "shared" / "images" / "outdoor_colosseum_sky.jpg"
SIZES = [(1024, 1024), (2048, 1024)]  # (width, height)
STAGES = ["semantic", "sam_encoder", "mask_decoding", "fusion", "total"]


def log(line: str = "") -> None:
    print(line, flush=True)


def test_image(width: int, height: int) -> np.ndarray:
    """The sky photo resized to the size (a real scene's statistics), or a gradient without it."""
    from PIL import Image

    if PHOTO.exists():
        with Image.open(PHOTO) as image:
            return np.asarray(image.convert("RGB").resize((width, height), Image.BILINEAR))
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([x * 255 // width, y * 255 // height, (x + y) % 256], -1).astype(np.uint8)


def header(device: str) -> None:
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    log(f"device: {device}; torch {torch.__version__}; intra-op threads: "
        f"{torch.get_num_threads()}; cpu cores: {os.cpu_count()}; {platform.processor() or ''}")
    log(f"load average at start: {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} "
        "(other processes on the machine slow every figure alike; compare ratios)")


def make_segmenter(**overrides):
    from segment_service.models import SamModel, SemanticModel
    from segment_service.segmenter import Segmenter
    from segment_service.settings import Settings

    settings = Settings(**overrides)
    return Segmenter(settings, SamModel(settings), SemanticModel(settings))


def ensure_tiny_models() -> Path:
    if (TINY_MODELS / ".complete").exists():
        return TINY_MODELS
    sys.path.insert(0, str(ROOT / "scripts"))
    from tiny_models import segment as builders

    out = Path(tempfile.mkdtemp(prefix="seg-tiny-"))
    for name, build in builders.BUILDERS.items():
        (out / name).mkdir()
        build(out / name)
    return out


async def time_modes(segmenter, repeats: int) -> dict:
    from segment_service.settings import Mode

    results = {}
    for width, height in SIZES:
        rgb = test_image(width, height)
        for mode in Mode:
            await segmenter.segment(rgb[:64, :64], mode=mode)  # loads and warms up
            runs = [await segmenter.segment(rgb, mode=mode) for _ in range(repeats)]
            timing = {s: statistics.median(r.timing_ms.get(s, 0.0) for r in runs) for s in STAGES}
            results[(width, height, mode)] = (timing, runs[-1].mask_count)
    return results


def print_modes(results: dict, title: str) -> None:
    from segment_service.settings import Mode

    log(title)
    log(f"  {'size':>9} {'mode':>8} | " + " ".join(f"{s:>13}" for s in STAGES)
        + " | masks | total vs semantic")
    for (width, height, mode), (timing, masks) in results.items():
        baseline = results[(width, height, Mode.SEMANTIC)][0]["total"]
        cells = " ".join(f"{timing[s]:>10.0f} ms" for s in STAGES)
        log(f"  {width}x{height:<4} {mode.value:>8} | {cells} | {masks:>5} | "
            f"{timing['total'] / baseline:>6.1f}x")


def model_ms(timing: dict) -> float:
    return timing["semantic"] + timing["sam_encoder"] + timing["mask_decoding"]


def synthetic_masks(width: int, height: int, count: int, seed: int = 0):
    """SAM-like masks: ellipses whose areas span 0.01% to 30% of the image, log-uniformly."""
    from segment_service.amg import Mask

    rng = np.random.default_rng(seed)
    masks = []
    for _ in range(count):
        area = width * height * 10 ** rng.uniform(-4, np.log10(0.3))
        aspect = 10 ** rng.uniform(-0.5, 0.5)
        ry = max(1, int(np.sqrt(area / np.pi / aspect)))
        rx = max(1, min(width // 2 - 1, int(ry * aspect)))
        ry = min(ry, height // 2 - 1)
        yy, xx = np.mgrid[-ry:ry + 1, -rx:rx + 1]
        pixels = (yy / ry) ** 2 + (xx / rx) ** 2 <= 1
        x0 = int(rng.integers(0, width - pixels.shape[1] + 1))
        y0 = int(rng.integers(0, height - pixels.shape[0] + 1))
        masks.append(Mask(x0=x0, y0=y0, pixels=pixels, score=float(rng.uniform(0.8, 1.0)),
                          stability=1.0, crop_area=width * height))
    return masks


def time_fusion(width: int, height: int, count: int, repeats: int = 5) -> float:
    from segment_service.fusion import categories_of, fuse, label_shares

    rng = np.random.default_rng(1)
    # A semantic map of large regions, as a real model gives.
    coarse = rng.integers(0, 150, size=(8, 16)).astype(np.int16)
    class_map = np.repeat(np.repeat(coarse, height // 8, 0), width // 16, 1)
    masks = synthetic_masks(width, height, count)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fused, _ = fuse(class_map, masks)
        categories_of(fused)
        label_shares(fused)
        times.append((time.perf_counter() - started) * 1000)
    return min(times)


async def sweep_tiny(models: Path, quick: bool) -> None:
    from segment_service.settings import Mode

    sides = 16 if quick else 32
    rgb = test_image(1024, 1024)
    log(f"points_per_batch sweep, whole service loop, tiny SAM2, 1024x1024 hybrid, "
        f"{sides}x{sides} prompts, thresholds 0, best of 3 (the tiny decoder costs little per "
        "prompt, so per-call overhead dominates; compare the full-size sweep above):")
    baseline = None
    for ppb in (1, 8, 32, 64, 256):
        segmenter = make_segmenter(
            sam_model=str(models / "sam2"), semantic_model=str(models / "maskformer"),
            device="cpu", points_per_side=sides, points_per_batch=ppb, pred_iou_thresh=0,
            stability_score_thresh=0, stability_score_offset=0, min_region_area=0)
        await segmenter.segment(rgb[:64, :64], mode=Mode.HYBRID)
        runs = [await segmenter.segment(rgb, mode=Mode.HYBRID) for _ in range(3)]
        decoding = min(r.timing_ms["mask_decoding"] for r in runs)
        baseline = baseline or decoding
        log(f"  points_per_batch={ppb:>4}: mask decoding {decoding:>8.0f} ms "
            f"({baseline / decoding:>5.2f}x the speed of points_per_batch=1)")
        segmenter.close()


def build_full_size(out: Path) -> tuple[Path, Path]:
    """sam2.1-hiera-tiny's architecture and MaskFormer with maskformer-swin-tiny-ade's layout,
    random weights, saved and loaded through the service's from_pretrained path."""
    sys.path.insert(0, str(ROOT / "scripts"))
    from tiny_models.segment import ADE20K_ID2LABEL_NAMES
    from transformers import (
        DetrConfig,
        MaskFormerConfig,
        MaskFormerForInstanceSegmentation,
        MaskFormerImageProcessorPil,
        Sam2Config,
        Sam2Model,
        SwinConfig,
    )

    torch.manual_seed(0)
    sam_dir, semantic_dir = out / "sam2.1-hiera-tiny-random", out / "maskformer-swin-tiny-random"
    Sam2Model(Sam2Config()).save_pretrained(sam_dir)  # the defaults are sam2.1-hiera-tiny
    (sam_dir / "preprocessor_config.json").write_text(
        '{"size": {"height": 1024, "width": 1024}, "image_mean": [0.485, 0.456, 0.406], '
        '"image_std": [0.229, 0.224, 0.225], "rescale_factor": 0.00392156862745098}')
    id2label = dict(enumerate(ADE20K_ID2LABEL_NAMES))
    backbone = SwinConfig(embed_dim=96, depths=[2, 2, 6, 2], num_heads=[3, 6, 12, 24],
                          window_size=7, out_features=["stage1", "stage2", "stage3", "stage4"])
    config = MaskFormerConfig(backbone_config=backbone, decoder_config=DetrConfig(),
                              id2label=id2label, label2id={v: k for k, v in id2label.items()})
    model = MaskFormerForInstanceSegmentation(config)
    model.config.backbone_config = backbone
    model.save_pretrained(semantic_dir)
    MaskFormerImageProcessorPil(size={"shortest_edge": 512, "longest_edge": 2048},
                                size_divisor=32).save_pretrained(semantic_dir)
    return sam_dir, semantic_dir


def sweep_full_size_decoder(segmenter, prompts: int, repeats: int) -> None:
    from segment_service.amg import build_point_grid

    predictor = segmenter.sam.predictor
    embeddings = predictor.embed(test_image(1024, 1024))
    grid = build_point_grid(32)[:prompts]
    log(f"points_per_batch sweep, full-size SAM2 mask decoder (one embedding, {prompts} "
        f"prompts, 3 masks each, low-resolution logits; best of {repeats}):")
    baseline = None
    for ppb in (1, 2, 4, 8, 16, 32, 64):
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            for first in range(0, prompts, ppb):
                predictor.decode(embeddings, grid[first:first + ppb])
            times.append((time.perf_counter() - started) * 1000 / prompts)
        per_prompt = min(times)
        baseline = baseline or per_prompt
        log(f"  points_per_batch={ppb:>3}: {per_prompt:>7.1f} ms per prompt "
            f"({baseline / per_prompt:>5.2f}x the speed of points_per_batch=1)")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats and prompts")
    parser.add_argument("--no-full-size", action="store_true",
                        help="skip the full-size random-weight models")
    args = parser.parse_args()
    from scene_rpc.torch_runtime import configure_threads, select_device

    configure_threads(0)
    device = str(select_device("auto")[0])
    header(device)
    repeats = 1 if args.quick else 3

    models = ensure_tiny_models()
    log(f"\ntiny models: {models} (sam2: 128 px input; maskformer: 96 px short side)")
    tiny = make_segmenter(
        sam_model=str(models / "sam2"), semantic_model=str(models / "maskformer"),
        points_per_side=32, crop_points_per_side=16, points_per_batch=64, pred_iou_thresh=0,
        stability_score_thresh=0, stability_score_offset=0)
    tiny_results = await time_modes(tiny, repeats)
    tiny.close()
    print_modes(tiny_results, f"per-stage time, tiny models, median of {repeats} "
                "(thresholds 0 so every candidate mask flows through upscaling and fusion; "
                "SEG_POINTS_PER_SIDE=32, tiles of 1024 with 16x16 prompts; the random semantic "
                "model's near-uniform scores keep all 150 classes as argmax candidates, the worst "
                "case of the full-resolution upsampling):")

    full_results = {}
    if not args.no_full_size:
        with tempfile.TemporaryDirectory(prefix="seg-bench-") as tmp:
            sam_dir, semantic_dir = build_full_size(Path(tmp))
            on_gpu = device.startswith("cuda")
            sides = 32 if on_gpu else 8
            full = make_segmenter(
                sam_model=str(sam_dir), semantic_model=str(semantic_dir),
                points_per_side=sides, crop_points_per_side=max(1, sides // 2),
                sam_mode_points_per_side=max(1, sides // 2),
                sam_mode_crop_points_per_side=max(1, sides // 4))
            log(f"\nfull-size architectures, random weights: SAM2 = sam2.1-hiera-tiny config "
                f"(31M params, 1024 px input), semantic = MaskFormer swin-tiny ADE layout "
                f"(512 px short side); SEG_POINTS_PER_SIDE={sides}"
                + ("" if on_gpu else " (CPU: a coarse grid keeps this to minutes; the decoder "
                   "time scales linearly with prompts, see the sweep)"))
            full_results = await time_modes(full, 1)
            print_modes(full_results, "per-stage time, full-size architectures, one run, "
                        f"SEG_POINTS_PER_BATCH={full.points_per_batch()} (random weights: few or "
                        "no masks pass the default filters):")
            sweep_full_size_decoder(full, prompts=16 if args.quick else 64,
                                    repeats=1 if args.quick else 3)
            full.close()

    log("\nfusion overhead (fusion + categories + label shares) against model time "
        "(semantic + SAM2 encoder + mask decoding), target <= 5%:")
    from segment_service.settings import Mode

    for width, height in SIZES:
        for count in (50, 200):
            fusion = time_fusion(width, height, count)
            line = f"  {width}x{height}, {count:>3} SAM-like masks: fusion {fusion:>6.1f} ms"
            for label, results in (("tiny", tiny_results), ("full-size", full_results)):
                if (width, height, Mode.HYBRID) in results:
                    model = model_ms(results[(width, height, Mode.HYBRID)][0])
                    line += f"; {100 * fusion / model:>5.1f}% of {label} hybrid model time"
            log(line)
    log()
    await sweep_tiny(models, args.quick)


if __name__ == "__main__":
    asyncio.run(main())

#!/usr/bin/env python
"""Segment-service benchmark: time per image per stage for 1024x1024 and 2048x1024 in every
SEG_MODE, fusion overhead against model time, a points_per_batch sweep, and SAM2 prompt
strategies (uniform grid against semantic-map prompts) on the shared photos.

    python segment-service/bench/bench_segment.py [--quick] [--no-full-size]
    python segment-service/bench/bench_segment.py --strategies-only [--quick] [--sam tiny|large]

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
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
TINY_MODELS = ROOT / ".cache" / "tiny-models"
SHARED_IMAGES = ROOT.parent / "shared" / "images"
if not SHARED_IMAGES.is_dir():  # a worktree under /work/wt: the shared data sits at /work/shared
    SHARED_IMAGES = ROOT.parents[1] / "shared" / "images"
PHOTO = SHARED_IMAGES / "outdoor_colosseum_sky.jpg"
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
    from scene_dev.tiny_models import segment as builders

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
    from segment_service.mask_geometry import Mask

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


# sam2.1-hiera-large's image encoder (Sam2Config's defaults are hiera-tiny); the prompt encoder
# and mask decoder are the same size in every SAM2.1 variant.
HIERA_LARGE = dict(
    hidden_size=144, num_attention_heads=2, blocks_per_stage=[2, 6, 36, 4],
    embed_dim_per_stage=[144, 288, 576, 1152], num_attention_heads_per_stage=[2, 4, 8, 16],
    window_size_per_stage=[8, 4, 16, 8], global_attention_blocks=[23, 33, 43],
    window_positional_embedding_background_size=[7, 7],
)


def sam2_config(size: str):
    from transformers import Sam2Config, Sam2HieraDetConfig, Sam2VisionConfig

    if size == "tiny":
        return Sam2Config()
    vision = Sam2VisionConfig(backbone_config=Sam2HieraDetConfig(**HIERA_LARGE),
                              backbone_channel_list=[1152, 576, 288, 144])
    return Sam2Config(vision_config=vision.to_dict())


def build_full_size(out: Path, sam_size: str = "tiny") -> tuple[Path, Path]:
    """sam2.1-hiera-tiny's (or -large's) architecture and MaskFormer with
    maskformer-swin-tiny-ade's layout, random weights, saved and loaded through the service's
    from_pretrained path."""
    from transformers import (
        DetrConfig,
        MaskFormerConfig,
        MaskFormerForInstanceSegmentation,
        MaskFormerImageProcessorPil,
        Sam2Model,
        SwinConfig,
    )

    from scene_dev.tiny_models.segment import ADE20K_ID2LABEL_NAMES

    torch.manual_seed(0)
    sam_dir = out / f"sam2.1-hiera-{sam_size}-random"
    semantic_dir = out / "maskformer-swin-tiny-random"
    Sam2Model(sam2_config(sam_size)).save_pretrained(sam_dir)
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
    from segment_service.prompts import build_point_grid

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


def photo_1mp(path: Path) -> np.ndarray:
    """A shared photo resized to about one megapixel, aspect kept (the issue's 1 MP scene)."""
    from PIL import Image

    with Image.open(path) as image:
        scale = (1_000_000 / (image.width * image.height)) ** 0.5
        size = (round(image.width * scale), round(image.height * scale))
        return np.asarray(image.convert("RGB").resize(size, Image.BILINEAR))


def proxy_class_map(rgb: np.ndarray, classes: int = 10, seed: int = 0) -> np.ndarray:
    """A stand-in for a trained ADE20K model's class map, which random weights cannot give:
    colour regions of the photo (blur, k-means on colour and position, a majority filter).

    It follows the photo's real region structure and is more fragmented than a semantic model's
    map (colour changes inside one object split it), so prompt counts from it are pessimistic.
    """
    from scipy import ndimage

    small = rgb[::4, ::4].astype(np.float32)
    small = ndimage.gaussian_filter(small, sigma=(3, 3, 0))
    rows, cols = np.indices(small.shape[:2], dtype=np.float32)
    features = np.concatenate([small.reshape(-1, 3) / 255,
                               0.3 * rows.reshape(-1, 1) / small.shape[0],
                               0.3 * cols.reshape(-1, 1) / small.shape[1]], axis=1)
    rng = np.random.default_rng(seed)
    centres = features[rng.choice(len(features), classes, replace=False)]
    for _ in range(10):
        labels = np.argmin(((features[:, None] - centres[None]) ** 2).sum(-1), axis=1)
        for k in range(classes):
            if np.any(labels == k):
                centres[k] = features[labels == k].mean(0)
    labels = labels.reshape(small.shape[:2])
    labels = ndimage.generic_filter(labels, lambda w: np.bincount(w.astype(int)).argmax(), size=7)
    rows = np.minimum(np.arange(rgb.shape[0]) // 4, labels.shape[0] - 1)
    cols = np.minimum(np.arange(rgb.shape[1]) // 4, labels.shape[1] - 1)
    return labels[rows[:, None], cols[None, :]].astype(np.int16)


def prompt_counts_on_photos(sides: tuple[int, ...]) -> None:
    """Prompts the semantic strategy places on proxy semantic maps of the shared photos."""
    from segment_service.prompts import semantic_prompts

    log("\nsemantic-strategy prompts on the shared photos at 1 MP (proxy class maps: colour "
        "regions, more fragmented than a trained ADE20K model's; no model runs):")
    for path in sorted(SHARED_IMAGES.glob("*.[jp][pn]g")):
        rgb = photo_1mp(path)
        class_map = proxy_class_map(rgb)
        regions = sum(int(ndimage_label_count(class_map == c)) for c in np.unique(class_map))
        line = f"  {path.stem:<24} {rgb.shape[1]}x{rgb.shape[0]}, {regions:>3} proxy regions:"
        for n in sides:
            started = time.perf_counter()
            count = len(semantic_prompts(class_map, n))
            ms = (time.perf_counter() - started) * 1000
            line += f"  n={n}: {count:>4} vs grid {n * n:>4} ({n * n / max(1, count):4.1f}x fewer,"
            line += f" placed in {ms:.0f} ms)"
        log(line)


def ndimage_label_count(mask: np.ndarray) -> int:
    from scipy import ndimage

    return ndimage.label(mask)[1]


async def compare_strategies(sam_size: str, quick: bool) -> None:
    """Grid against semantic prompts through the whole service loop with full-size random-weight
    models on a 1 MP photo, plus the draft/standard/high knob sets recommended for CPU."""
    from segment_service.segmenter import Knobs
    from segment_service.settings import CropMode, Mode, PromptStrategy

    grid, semantic = PromptStrategy.GRID, PromptStrategy.SEMANTIC
    # (label, knobs, proxy map?) -- the proxy map stands in for a trained semantic model's.
    hybrid, semantic_mode = Mode.HYBRID, Mode.SEMANTIC
    one_pass = dict(crop_mode=CropMode.OFF, max_input_side_px=1024)
    # (label, mode, knobs): the strategies at equal density, then candidate quality presets.
    configs = [
        ("grid n=16", hybrid, Knobs(points_per_side=16, prompt_strategy=grid)),
        ("semantic n=16", hybrid, Knobs(points_per_side=16, prompt_strategy=semantic)),
        ("semantic n=8, 1024, no tiles", hybrid,
         Knobs(points_per_side=8, prompt_strategy=semantic, **one_pass)),
        ("semantic mode, 768", semantic_mode, Knobs(max_input_side_px=768)),
    ]
    if not quick:
        configs.insert(0, ("grid n=32 (SAM2's default)", hybrid,
                           Knobs(points_per_side=32, prompt_strategy=grid)))
        configs.insert(3, ("semantic n=32", hybrid,
                           Knobs(points_per_side=32, prompt_strategy=semantic)))
    rgb = photo_1mp(PHOTO)
    with tempfile.TemporaryDirectory(prefix="seg-bench-") as tmp:
        sam_dir, semantic_dir = build_full_size(Path(tmp), sam_size)
        segmenter = make_segmenter(sam_model=str(sam_dir), semantic_model=str(semantic_dir))
        # Random semantic weights give a meaningless map; the service's semantic strategy is
        # timed on the proxy map instead, patched in where the service places its prompts.
        from segment_service.mask_geometry import crop_pixels
        from segment_service.prompts import semantic_prompts

        proxy = proxy_class_map(rgb)

        def prompts_from_proxy(class_map, crops, knobs=None):
            strategy = (knobs or Knobs()).prompt_strategy or segmenter.settings.prompt_strategy
            if strategy is grid:
                return None
            scale = class_map.shape[1] / proxy.shape[1]
            if scale != 1:  # the image was capped: the proxy map at the models' size
                rows = (np.arange(class_map.shape[0]) * proxy.shape[0]) // class_map.shape[0]
                cols = (np.arange(class_map.shape[1]) * proxy.shape[1]) // class_map.shape[1]
                class_map = proxy[rows[:, None], cols[None, :]]
            else:
                class_map = proxy
            return [semantic_prompts(crop_pixels(class_map, c), c.points_per_side)
                    for c in crops]

        segmenter.prompts = prompts_from_proxy
        await segmenter.segment(rgb[:64, :64])  # loads and warms up
        log(f"\nprompt strategies, hybrid mode, full-size random-weight SAM2.1-hiera-{sam_size} + "
            f"MaskFormer swin-tiny, {PHOTO.stem} at {rgb.shape[1]}x{rgb.shape[0]}, "
            f"SEG_POINTS_PER_BATCH={segmenter.points_per_batch()}, one run each (semantic "
            "prompts from the proxy class map; random weights keep no masks, so 'masks' is 0):")
        log(f"  {'config':<32} | prompts | masks | {'semantic':>9} {'encoder':>9} "
            f"{'decoding':>9} {'total':>9} | vs first")
        baseline = None
        for label, mode, knobs in configs:
            result = await segmenter.segment(rgb, mode=mode, knobs=knobs)
            t = result.timing_ms
            baseline = baseline or t["total"]
            log(f"  {label:<32} | {result.prompt_count:>7} | {result.mask_count:>5} | "
                f"{t.get('semantic', 0):>7.0f}ms {t.get('sam_encoder', 0):>7.0f}ms "
                f"{t.get('mask_decoding', 0):>7.0f}ms {t['total']:>7.0f}ms | "
                f"{baseline / t['total']:5.2f}x faster")
        segmenter.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats and prompts")
    parser.add_argument("--no-full-size", action="store_true",
                        help="skip the full-size random-weight models")
    parser.add_argument("--strategies-only", action="store_true",
                        help="only the prompt strategies (grid vs semantic) on the shared photos")
    parser.add_argument("--sam", choices=["tiny", "large"], default="tiny",
                        help="SAM2.1 architecture of the strategy comparison")
    args = parser.parse_args()
    from scene_rpc.ml.torch_runtime import configure_threads, select_device

    configure_threads(0)
    device = str(select_device("auto")[0])
    header(device)
    repeats = 1 if args.quick else 3
    if args.strategies_only:
        prompt_counts_on_photos((8, 16, 32))
        await compare_strategies(args.sam, args.quick)
        return

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
    prompt_counts_on_photos((8, 16, 32))
    if not args.no_full_size:
        await compare_strategies(args.sam, args.quick)


if __name__ == "__main__":
    asyncio.run(main())

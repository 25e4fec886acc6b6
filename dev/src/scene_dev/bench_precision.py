"""bfloat16 against float32 on what the user receives, with a profile's full-size models.

A precision change is bounded on the outputs, not on the tensors (issue 26): against float32 eager
PyTorch, on the shared photos, each variant must keep

- depth (the model's disparity per pixel, before normalisation): median relative difference at
  most 0.5 % and 99th percentile at most 3 %;
- the audio category per pixel (the segment service's whole answer, SAM2 masks fused with the
  semantic map): the same for at least 99 % of pixels;
- SAM2's masks (a fixed 8 x 8 grid of point prompts, three masks each, at the decoder's
  resolution): mean IoU at least 0.98.

Depth runs every variant on the compiled service's shape buckets (the eager reference too), so
its differences are the precision's and the runtime's alone. Each variant is loaded through the
services' own loaders (``depth_service.backends``,
``segment_service.models``), timed on the same photos in the same run, and printed as a table with
the speed-up over float32 eager. The models are random-weight twins of the real architectures
(``scene_dev.full_size_models``): speed is the real one, but trained weights may behave
differently, which the ``real_models`` tests check where the weights are cached.

    python scripts/bench_precision.py                  # fast profile, every variant
    python scripts/bench_precision.py --profile quality --variants "torch float32,torch bfloat16"
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from scene_dev import full_size_models
from scene_dev.paths import FULL_SIZE_DIR, REPO_ROOT
from scene_rpc.profiles import get_profile

SHARED_IMAGES = REPO_ROOT.parent / "shared" / "images"
PHOTOS = ("indoor_room.jpg", "animal_cat_chelsea.png", "outdoor_colosseum_sky.jpg")
# The bounds of issue 26.
DEPTH_MEDIAN_BOUND = 0.005
DEPTH_P99_BOUND = 0.03
CATEGORY_AGREEMENT_BOUND = 0.99
MASK_IOU_BOUND = 0.98
# Disparities below this fraction of the photo's median are "at infinity": a relative difference
# of two near-zero values says nothing about the depth a user sees.
DISPARITY_FLOOR = 1e-3
# The decoder's prompts: an 8 x 8 grid, as SAM2's automatic generator places them.
PROMPT_GRID = 8


@dataclass(frozen=True)
class Variant:
    runtime: str
    dtype: str

    @property
    def name(self) -> str:
        return f"{self.runtime} {self.dtype}"


REFERENCE = Variant("torch", "float32")
VARIANTS = (REFERENCE, Variant("openvino", "float32"), Variant("openvino", "bfloat16"),
            Variant("torch", "bfloat16"))


def log(text: str = "") -> None:
    print(text, file=sys.stderr, flush=True)


def photos() -> dict[str, np.ndarray]:
    """The shared photos at about 1 MP (the scene bench's input size)."""
    result = {}
    for name in PHOTOS:
        image = Image.open(SHARED_IMAGES / name).convert("RGB")
        scale = (1e6 / (image.width * image.height)) ** 0.5
        size = (round(image.width * scale), round(image.height * scale))
        result[name] = np.asarray(image.resize(size, Image.Resampling.LANCZOS))
    return result


def _timed(function, repeats: int):
    """(the last result, the median seconds of ``repeats`` calls)."""
    times, result = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - started)
    return result, statistics.median(times)


def _wait_for_exports(forward) -> None:
    """A compiled forward exports a new shape in the background: wait, so timings are its own."""
    wait = getattr(forward, "wait_for_exports", None)
    if wait is not None:
        wait()


def run_depth(model_dir: Path, variant: Variant, images: dict, cache: Path, repeats: int):
    """Disparity per photo and the median seconds of one pass."""
    from depth_service.backends import ProcessorBackend, load_backend

    backend = load_backend(str(model_dir), torch.device("cpu"), getattr(torch, variant.dtype),
                           runtime=variant.runtime, cache_dir=cache)
    if isinstance(backend, ProcessorBackend):
        # Every variant on the compiled service's shape buckets, the eager reference too: the
        # differences are then the dtype's and the runtime's alone. (A bucket's stretch against
        # the processor's own shape moves a random-weight model's depth by most of its value, as
        # any change of the patch grid does; only trained weights can bound it:
        # depth-service/tests/test_real_models.py.)
        backend.bucketed = backend.keeps_aspect_ratio
    outputs, seconds = {}, []
    for name, rgb in images.items():
        # Warm-up: compiles the bucket's graph from the disk (a shape far from every bucket is
        # exported in the background instead: waited for, so the timings are the graph's).
        backend.predict([rgb])
        _wait_for_exports(backend._forward)
        [prediction], elapsed = _timed(lambda rgb=rgb: backend.predict([rgb]), repeats)
        outputs[name] = prediction.disparity
        seconds.append(elapsed)
    return outputs, sum(seconds) / len(seconds), f"{backend.runtime}, {backend.dtype}"


def _segment_settings(profile: str, variant: Variant, cache: Path):
    from segment_service.settings import Settings

    chosen = get_profile(profile)
    return Settings(profile=profile, runtime=variant.runtime, dtype=variant.dtype,
                    runtime_cache_dir=cache,
                    sam_model=str(full_size_models.ensure(FULL_SIZE_DIR, chosen.sam_model)),
                    semantic_model=str(full_size_models.ensure(FULL_SIZE_DIR,
                                                               chosen.semantic_model)))


def run_segment(profile: str, variant: Variant, images: dict, cache: Path, repeats: int):
    """Per photo: the categories, SAM2's masks on the prompt grid; and the median seconds of the
    image encoder, one decoder pass of the grid and the whole segmentation."""
    from segment_service.models import SamModel, SemanticModel
    from segment_service.prompts import build_point_grid
    from segment_service.segmenter import Segmenter

    settings = _segment_settings(profile, variant, cache)
    sam, semantic = SamModel(settings), SemanticModel(settings)
    segmenter = Segmenter(settings, sam, semantic)
    points = torch.as_tensor(build_point_grid(PROMPT_GRID), dtype=torch.float32)
    batch = segmenter.points_per_batch()
    categories, masks = {}, {}
    timings: dict[str, list[float]] = {"encoder": [], "decoder": [], "segment": []}
    try:
        asyncio.run(_load(sam, semantic))
        predictor = sam.predictor
        assert predictor is not None
        for name, rgb in images.items():
            embeddings, encoder_s = _timed(lambda rgb=rgb: predictor.embed(rgb), repeats)
            logits, decoder_s = _timed(lambda e=embeddings: decode(predictor, e, points, batch),
                                       repeats)
            masks[name] = (logits > 0).cpu().numpy()
            result, segment_s = _timed(
                lambda rgb=rgb: asyncio.run(segmenter.segment(rgb)), repeats)
            categories[name] = result.categories
            timings["encoder"].append(encoder_s)
            timings["decoder"].append(decoder_s)
            timings["segment"].append(segment_s)
        label = f"{sam.info().device}, {sam.info().dtype}"
    finally:
        segmenter.close()
    return categories, masks, {k: sum(v) / len(v) for k, v in timings.items()}, label


def decode(predictor, embeddings, points: torch.Tensor, batch: int) -> torch.Tensor:
    """Low-resolution mask logits of every prompt, decoded in the service's batches."""
    return torch.cat([predictor.decode(embeddings, points[first:first + batch])[0]
                      for first in range(0, len(points), batch)])


async def _load(*models) -> None:
    for model in models:
        await model.ensure_loaded()


def depth_differences(output: np.ndarray, reference: np.ndarray) -> tuple[float, float]:
    """(median, 99th percentile) of |output - reference| / reference over the pixels whose
    reference disparity is above the floor.

    Maps of different shapes (a caller comparing a shape bucket with the processor's own shape)
    are compared at the reference's, the output resized bilinearly as the depth pipeline does.
    """
    if output.shape != reference.shape:
        output = F.interpolate(torch.from_numpy(output)[None, None], size=reference.shape,
                               mode="bilinear", align_corners=False)[0, 0].numpy()
    floor = DISPARITY_FLOOR * float(np.median(np.abs(reference)))
    valid = np.abs(reference) > floor
    relative = np.abs(output[valid] - reference[valid]) / np.abs(reference[valid])
    return float(np.median(relative)), float(np.percentile(relative, 99))


def mean_mask_iou(masks: np.ndarray, reference: np.ndarray) -> float:
    """Mean IoU of corresponding masks [N, h, w]; a mask empty in both counts as equal."""
    inter = np.logical_and(masks, reference).sum(axis=(1, 2))
    union = np.logical_or(masks, reference).sum(axis=(1, 2))
    iou = np.where(union > 0, inter / np.maximum(union, 1), 1.0)
    return float(iou.mean())


def compare(results: dict, reference: dict) -> dict:
    """The measured differences of one variant against the reference, worst photo first."""
    depth = [depth_differences(results["depth"][n], reference["depth"][n])
             for n in reference["depth"]]
    agreement = [float(np.mean(results["categories"][n] == reference["categories"][n]))
                 for n in reference["categories"]]
    iou = [mean_mask_iou(results["masks"][n], reference["masks"][n]) for n in reference["masks"]]
    row = {"depth_median_rel": max(d[0] for d in depth), "depth_p99_rel": max(d[1] for d in depth),
           "category_agreement": min(agreement), "mask_mean_iou": min(iou)}
    row["within_bounds"] = (row["depth_median_rel"] <= DEPTH_MEDIAN_BOUND
                            and row["depth_p99_rel"] <= DEPTH_P99_BOUND
                            and row["category_agreement"] >= CATEGORY_AGREEMENT_BOUND
                            and row["mask_mean_iou"] >= MASK_IOU_BOUND)
    return row


def table(rows: dict, profile: str) -> str:
    reference = rows[REFERENCE.name]
    lines = [
        f"`{profile}`, float32 eager = reference; speed-ups against it in the same run; "
        "differences: the worst of the photos",
        "",
        "| variant | depth pass | × | SAM2 encoder | × | decoder (64 prompts) | × | segment "
        "(whole) | × | depth median / p99 rel. diff. | categories equal | SAM2 mask mIoU |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, row in rows.items():
        t = row["seconds"]
        cells = [name]
        for key in ("depth", "encoder", "decoder", "segment"):
            cells += [f"{t[key]:.3f} s", f"{reference['seconds'][key] / t[key]:.2f}"]
        if name == REFERENCE.name:
            cells += ["(reference)", "", ""]
        else:
            d = row["differences"]
            cells += [f"{100 * d['depth_median_rel']:.3f} % / {100 * d['depth_p99_rel']:.2f} %",
                      f"{100 * d['category_agreement']:.2f} %", f"{d['mask_mean_iou']:.4f}"]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(f"Bounds: depth median <= {100 * DEPTH_MEDIAN_BOUND} %, p99 <= "
                 f"{100 * DEPTH_P99_BOUND} %; categories equal >= {100 * CATEGORY_AGREEMENT_BOUND}"
                 f" %; mask mIoU >= {MASK_IOU_BOUND}.")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="fast")
    parser.add_argument("--variants", default=",".join(v.name for v in VARIANTS),
                        help="comma-separated 'runtime dtype' pairs; float32 eager always runs")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls each (the median)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads; 0 = every core")
    parser.add_argument("--runtime-cache-dir", type=Path,
                        help="exported graphs (default: a temporary folder)")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    from scene_rpc.ml.torch_runtime import configure_threads, cpu_runs_bfloat16

    args = parse_args(argv)
    threads = configure_threads(args.threads)
    variants = [REFERENCE] + [Variant(*name.split()) for name in args.variants.split(",")
                              if name.strip() and name.strip() != REFERENCE.name]
    chosen = get_profile(args.profile)
    depth_dir = full_size_models.ensure(FULL_SIZE_DIR, chosen.depth_model)
    images = photos()
    log(f"{args.profile}: {chosen.depth_model}, {chosen.sam_model}, {chosen.semantic_model}; "
        f"{threads} threads; native bfloat16: {cpu_runs_bfloat16()}")
    rows: dict = {}
    with tempfile.TemporaryDirectory(prefix="bench-precision-") as tmp:
        cache = args.runtime_cache_dir or Path(tmp)
        outputs: dict = {}
        for variant in variants:
            log(f"== {variant.name}")
            depth, depth_s, depth_label = run_depth(depth_dir, variant, images, cache,
                                                    args.repeats)
            gc.collect()
            categories, masks, seconds, segment_label = run_segment(
                args.profile, variant, images, cache, args.repeats)
            gc.collect()
            outputs[variant.name] = {"depth": depth, "categories": categories, "masks": masks}
            rows[variant.name] = {"depth_runs_on": depth_label, "sam_runs_on": segment_label,
                                  "seconds": {"depth": depth_s, **seconds}}
            if variant != REFERENCE:
                rows[variant.name]["differences"] = compare(outputs[variant.name],
                                                            outputs[REFERENCE.name])
            log(json.dumps(rows[variant.name]))
    print(table(rows, args.profile), flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""SAM2 automatic mask generation, owned here because transformers' ``mask-generation`` pipeline
needs torchvision. The model side is ``sam_predictor.py``; crops and mask geometry are
``mask_geometry.py``.

The loop follows SAM2's ``SAM2AutomaticMaskGenerator``: a grid of point prompts per crop, the image
embedding computed once per crop, prompts decoded in batches with three candidate masks each,
filtering by predicted IoU and stability score, box non-maximum suppression within and across
crops, then removal of small holes and islands. Crops are the whole image plus, for large images
and panoramas, overlapping square tiles (panorama tiles wrap around the right edge).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from segment_service.mask_geometry import (
    Crop,
    Mask,
    crop_pixels,
    is_near_crop_edge,
    masks_to_boxes,
    nms,
    stability_scores,
    without_small_regions,
)
from segment_service.prompts import build_point_grid
from segment_service.sam_predictor import Sam2Predictor

# Low-resolution masks upscaled to full size per chunk, bounding the memory of one batch.
UPSCALE_CHUNK = 16

ProgressCallback = Callable[[str, int, int], None]


class WorkCancelled(Exception):
    """The caller went away; raised between prompt batches so the remaining work is skipped."""


@dataclass(frozen=True)
class AmgParams:
    """The thresholds of SAM2's ``SAM2AutomaticMaskGenerator``, with its defaults."""

    points_per_batch: int = 64
    pred_iou_thresh: float = 0.8
    stability_score_thresh: float = 0.95
    stability_score_offset: float = 1.0
    mask_threshold: float = 0.0
    box_nms_thresh: float = 0.7
    crop_nms_thresh: float = 0.7
    min_region_area: int = 0


@dataclass
class AmgResult:
    masks: list[Mask]
    encoder_s: float = 0.0
    decoding_s: float = 0.0
    batches: int = 0
    candidates: int = 0  # masks that passed the filters and the per-batch NMS
    prompts: int = 0  # point prompts decoded


def count_batches(
    crops: Sequence[Crop], points_per_batch: int, prompts: Sequence[torch.Tensor] | None = None
) -> int:
    """Decoder passes for ``crops``: their own prompts when given, else their grids."""
    counts = ([p.shape[0] for p in prompts] if prompts is not None
              else [c.points_per_side**2 for c in crops])
    return sum(math.ceil(n / points_per_batch) for n in counts)


def _check(cancel: threading.Event | None, done: int, total: int) -> None:
    if cancel is not None and cancel.is_set():
        raise WorkCancelled(f"cancelled after {done}/{total} prompt batches")


@dataclass
class _Candidates:
    """Candidate masks of one crop still at low resolution, with boxes in crop pixels."""

    logits: torch.Tensor  # [K, h, w]
    iou: torch.Tensor  # [K]
    stability: torch.Tensor  # [K]
    boxes: torch.Tensor  # [K, 4] int64, approximate (from the low-resolution masks)

    def take(self, index: torch.Tensor | list[int]) -> _Candidates:
        index = torch.as_tensor(index, dtype=torch.int64)
        return _Candidates(self.logits[index.to(self.logits.device)], self.iou[index],
                           self.stability[index], self.boxes[index])

    @staticmethod
    def cat(parts: list[_Candidates]) -> _Candidates:
        return _Candidates(*(torch.cat([getattr(p, f) for p in parts])
                             for f in ("logits", "iou", "stability", "boxes")))


def _low_res_candidates(
    logits: torch.Tensor,
    iou: torch.Tensor,
    crop: Crop,
    params: AmgParams,
    *,
    image_width: int,
    image_height: int,
    panorama: bool,
) -> _Candidates:
    """One batch's candidates that pass the filters, deduplicated, still at low resolution."""
    # Stability on the low-resolution logits: the ratio of areas hardly changes with the
    # resolution, and it spares upscaling candidates that are about to be dropped.
    stability = stability_scores(logits, params.mask_threshold, params.stability_score_offset)
    keep = (iou > params.pred_iou_thresh) & (stability > params.stability_score_thresh)
    logits, iou, stability = logits[keep], iou[keep].cpu(), stability[keep].cpu()
    # Boxes of the low-resolution masks, scaled to the crop: within a few pixels of the final
    # ones, which is all the edge test and NMS need.
    low_h, low_w = logits.shape[-2:]
    scale = torch.tensor([crop.width / low_w, crop.height / low_h] * 2, dtype=torch.float64)
    boxes = (masks_to_boxes(logits > params.mask_threshold).cpu() * scale).round().long()
    usable = (boxes[:, 2] > boxes[:, 0]) & ~is_near_crop_edge(
        boxes, crop, image_width, image_height, panorama=panorama)
    candidates = _Candidates(logits, iou, stability, boxes).take(torch.nonzero(usable).flatten())
    # Neighbouring grid points, decoded together, mostly find the same object: deduplicating
    # per batch bounds the memory held until the crop's own NMS.
    best_first = torch.argsort(candidates.iou, descending=True).tolist()
    return candidates.take(nms(candidates.boxes, best_first, params.box_nms_thresh))


def _upscaled_masks(
    candidates: _Candidates, crop: Crop, params: AmgParams, *, image_width: int,
    image_height: int, panorama: bool,
) -> list[Mask]:
    """The candidates at the crop's full resolution, as Masks in crop coordinates."""
    masks: list[Mask] = []
    for start in range(0, candidates.logits.shape[0], UPSCALE_CHUNK):
        chunk = candidates.logits[start:start + UPSCALE_CHUNK, None]
        binary = F.interpolate(chunk, size=(crop.height, crop.width), mode="bilinear",
                               align_corners=False)[:, 0] > params.mask_threshold
        boxes = masks_to_boxes(binary).cpu()
        usable = (boxes[:, 2] > boxes[:, 0]) & ~is_near_crop_edge(
            boxes, crop, image_width, image_height, panorama=panorama)
        if not usable.any():
            continue
        binary_np = binary.cpu().numpy()
        for i in torch.nonzero(usable).flatten().tolist():
            x0, y0, x1, y1 = boxes[i].tolist()
            masks.append(Mask(
                x0=x0, y0=y0,
                pixels=np.ascontiguousarray(binary_np[i, y0:y1, x0:x1]),
                score=float(candidates.iou[start + i]),
                stability=float(candidates.stability[start + i]),
                crop_area=crop.area,
            ))
    return masks


def generate_masks(
    predictor: Sam2Predictor,
    rgb: np.ndarray,
    crops: Sequence[Crop],
    params: AmgParams,
    *,
    panorama: bool = False,
    prompts: Sequence[torch.Tensor] | None = None,
    on_progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
) -> AmgResult:
    """Automatic masks for ``rgb`` over ``crops``; see the module docstring for the steps.

    ``prompts`` gives each crop its own (x, y) point prompts in [0, 1] of the crop (for example
    from ``prompts.semantic_prompts``); without it every crop gets its uniform grid.
    """
    height, width = rgb.shape[:2]
    if prompts is not None and len(prompts) != len(crops):
        raise ValueError(f"{len(prompts)} prompt sets for {len(crops)} crops")
    total_batches = count_batches(crops, params.points_per_batch, prompts)
    result = AmgResult(masks=[])
    found: list[Mask] = []
    found_boxes: list[torch.Tensor] = []
    for crop_index, crop in enumerate(crops):
        _check(cancel, result.batches, total_batches)
        started = time.perf_counter()
        embeddings = predictor.embed(crop_pixels(rgb, crop))
        result.encoder_s += time.perf_counter() - started
        if on_progress is not None:
            on_progress("sam_encoder", crop_index + 1, len(crops))

        started = time.perf_counter()
        points = (prompts[crop_index] if prompts is not None
                  else build_point_grid(crop.points_per_side))
        result.prompts += points.shape[0]
        batches: list[_Candidates] = []
        for first in range(0, points.shape[0], params.points_per_batch):
            _check(cancel, result.batches, total_batches)
            logits, iou = predictor.decode(embeddings,
                                           points[first:first + params.points_per_batch])
            batches.append(_low_res_candidates(
                logits, iou, crop, params,
                image_width=width, image_height=height, panorama=panorama,
            ))
            result.batches += 1
            if on_progress is not None:
                on_progress("mask_decoding", result.batches, total_batches)
        if not batches:  # a crop without prompts (a semantic map with no usable region)
            result.decoding_s += time.perf_counter() - started
            continue
        candidates = _Candidates.cat(batches)
        result.candidates += len(candidates.iou)
        # NMS on the low-resolution boxes first: only the survivors are upscaled.
        best_first = torch.argsort(candidates.iou, descending=True).tolist()
        candidates = candidates.take(nms(candidates.boxes, best_first, params.box_nms_thresh))
        for mask in _upscaled_masks(candidates, crop, params, image_width=width,
                                    image_height=height, panorama=panorama):
            # Crop -> image coordinates; a panorama tile's masks may start past the seam.
            mask.x0 = (mask.x0 + crop.x0) % width
            mask.y0 += crop.y0
            found.append(mask)
            found_boxes.append(torch.tensor(mask.box))
        del embeddings
        result.decoding_s += time.perf_counter() - started

    started = time.perf_counter()
    if len(crops) > 1 and found:
        # The same object found in several crops: keep the one from the smallest crop (the
        # most detailed view), then the most confident, as SAM does.
        preference = sorted(range(len(found)), key=lambda i: (found[i].crop_area, -found[i].score))
        kept = nms(torch.stack(found_boxes), preference, params.crop_nms_thresh,
                   wrap_width=width if panorama else None)
        found = [found[i] for i in sorted(kept)]
    if params.min_region_area > 0:
        cleaned = (without_small_regions(m, params.min_region_area, width) for m in found)
        found = [m for m in cleaned if m is not None]
    result.masks = found
    result.decoding_s += time.perf_counter() - started
    return result

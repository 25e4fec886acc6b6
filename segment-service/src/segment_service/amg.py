"""SAM2 automatic mask generation, owned here because transformers' ``mask-generation`` pipeline
and ``Sam2ImageProcessor`` need torchvision.

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
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from segment_service.prompts import build_point_grid

# Masks whose box comes this close (in pixels) to a tile edge that is not an image edge are cut
# off by the tile; the neighbouring tile or the whole-image pass sees them whole (SAM's value).
CROP_EDGE_TOLERANCE_PX = 20.0
# Low-resolution masks upscaled to full size per chunk, bounding the memory of one batch.
UPSCALE_CHUNK = 16

ProgressCallback = Callable[[str, int, int], None]


class WorkCancelled(Exception):
    """The caller went away; raised between prompt batches so the remaining work is skipped."""


# --------------------------------------------------------------------------------------------
# Crops


@dataclass(frozen=True)
class Crop:
    """A region the mask generator embeds on its own, in image pixels (end exclusive).

    ``x1`` exceeds the image width for a panorama tile that wraps around the right edge.
    """

    x0: int
    y0: int
    x1: int
    y1: int
    points_per_side: int
    whole_image: bool = False

    @property
    def width(self) -> int:
        return self.x1 - self.x0

    @property
    def height(self) -> int:
        return self.y1 - self.y0

    @property
    def area(self) -> int:
        return self.width * self.height


def _tile_starts(length: int, tile: int, overlap_px: int) -> list[int]:
    """Evenly spaced starts of tiles of side ``tile`` covering [0, length) with at least
    ``overlap_px`` shared between neighbours."""
    if length <= tile:
        return [0]
    count = math.ceil((length - overlap_px) / max(1, tile - overlap_px))
    count = max(count, 2)
    return [round(i * (length - tile) / (count - 1)) for i in range(count)]


def _wrapped_tile_starts(length: int, tile: int, overlap_px: int) -> list[int]:
    """Starts of tiles around a circle of circumference ``length``: the last tile runs past the
    end and wraps, so the seam lies inside a tile like any other column."""
    count = max(2, math.ceil(length / max(1, tile - overlap_px)))
    return [round(i * length / count) for i in range(count)]


def plan_crops(
    width: int,
    height: int,
    *,
    panorama: bool,
    crop_size_px: int,
    overlap: float,
    points_per_side: int,
    crop_points_per_side: int,
) -> list[Crop]:
    """The whole image, then tiles when the image is larger than ``crop_size_px`` or a panorama.

    The whole-image pass finds the large regions (sky, ground, buildings) that no tile sees whole;
    the tiles, run near pixel for pixel, find the small objects the downscaled pass misses.
    """
    crops = [Crop(0, 0, width, height, points_per_side, whole_image=True)]
    tile_needed = crop_size_px > 0 and max(width, height) > crop_size_px
    if not (tile_needed or panorama):
        return crops
    side = min(crop_size_px or height, height) if panorama else min(crop_size_px, width, height)
    overlap_px = int(overlap * side)
    ys = _tile_starts(height, side, overlap_px)
    xs = (_wrapped_tile_starts(width, side, overlap_px) if panorama
          else _tile_starts(width, side, overlap_px))
    for y in ys:
        for x in xs:
            crops.append(Crop(x, y, x + side, min(y + side, height), crop_points_per_side))
    return crops


def crop_pixels(rgb: np.ndarray, crop: Crop) -> np.ndarray:
    """The crop's pixels; columns past the right edge wrap around (panorama tiles)."""
    width = rgb.shape[1]
    rows = rgb[crop.y0:crop.y1]
    if crop.x1 <= width:
        return rows[:, crop.x0:crop.x1]
    return rows[:, np.arange(crop.x0, crop.x1) % width]


# --------------------------------------------------------------------------------------------
# Masks and the geometry on them


@dataclass
class Mask:
    """One mask in compact form: its tight box and the pixels inside it.

    ``x0`` is in [0, image width); a panorama mask's box may run past the right edge, and its
    columns then wrap (column ``(x0 + i) % width``).
    """

    x0: int
    y0: int
    pixels: np.ndarray  # bool [h, w]
    score: float  # the model's predicted IoU
    stability: float
    crop_area: int
    area: int = field(default=-1)

    def __post_init__(self) -> None:
        if self.area < 0:
            self.area = int(np.count_nonzero(self.pixels))

    @property
    def box(self) -> tuple[int, int, int, int]:
        """(x0, y0, x1, y1), end exclusive."""
        h, w = self.pixels.shape
        return self.x0, self.y0, self.x0 + w, self.y0 + h


def stability_scores(logits: torch.Tensor, threshold: float, offset: float) -> torch.Tensor:
    """IoU between the mask thresholded at ``threshold + offset`` and at ``threshold - offset``:
    a mask whose extent hardly moves with the cutoff is a confident one."""
    flat = logits.flatten(-2)
    intersections = (flat > threshold + offset).sum(-1, dtype=torch.int32)
    unions = (flat > threshold - offset).sum(-1, dtype=torch.int32)
    return torch.where(unions > 0, intersections / unions.clamp(min=1), torch.zeros_like(
        intersections, dtype=torch.float32))


def masks_to_boxes(masks: torch.Tensor) -> torch.Tensor:
    """[N, H, W] bool -> [N, 4] (x0, y0, x1, y1) tight boxes, end exclusive; empty masks -> 0s."""
    if masks.shape[0] == 0:
        return torch.zeros((0, 4), dtype=torch.int64, device=masks.device)
    height, width = masks.shape[-2:]
    rows = masks.any(dim=-1)
    cols = masks.any(dim=-2)
    row_idx = torch.arange(height, device=masks.device)
    col_idx = torch.arange(width, device=masks.device)
    y0 = torch.where(rows, row_idx, height).amin(dim=-1)
    y1 = torch.where(rows, row_idx, -1).amax(dim=-1) + 1
    x0 = torch.where(cols, col_idx, width).amin(dim=-1)
    x1 = torch.where(cols, col_idx, -1).amax(dim=-1) + 1
    boxes = torch.stack([x0, y0, x1, y1], dim=-1)
    empty = ~rows.any(dim=-1)
    return torch.where(empty[:, None], torch.zeros_like(boxes), boxes)


def box_iou(a: torch.Tensor, b: torch.Tensor, wrap_width: int | None = None) -> torch.Tensor:
    """Pairwise IoU of [N, 4] and [M, 4] end-exclusive boxes -> [N, M].

    With ``wrap_width`` (panoramas) x is periodic: each pair counts at its best horizontal shift
    by -width, 0 or +width, so duplicates either side of the seam are recognised.
    """
    a = a.to(torch.float64)
    b = b.to(torch.float64)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    best = torch.zeros((a.shape[0], b.shape[0]), dtype=torch.float64)
    for shift in (0,) if wrap_width is None else (-wrap_width, 0, wrap_width):
        bx0 = b[:, 0] + shift
        bx1 = b[:, 2] + shift
        iw = (torch.minimum(a[:, None, 2], bx1[None]) - torch.maximum(a[:, None, 0], bx0[None]))
        ih = (torch.minimum(a[:, None, 3], b[None, :, 3]) - torch.maximum(a[:, None, 1],
                                                                          b[None, :, 1]))
        inter = iw.clamp(min=0) * ih.clamp(min=0)
        union = area_a[:, None] + area_b[None] - inter
        best = torch.maximum(best, torch.where(union > 0, inter / union, torch.zeros_like(inter)))
    return best


def nms(
    boxes: torch.Tensor, order: Sequence[int], iou_thresh: float, wrap_width: int | None = None
) -> list[int]:
    """Greedy non-maximum suppression (torchvision.ops is unavailable here).

    ``order`` lists box indices best first; a box is kept unless it overlaps a kept one by more
    than ``iou_thresh``. Returns the kept indices, best first.
    """
    if len(order) == 0:
        return []
    order_t = torch.as_tensor(list(order), dtype=torch.int64)
    iou = box_iou(boxes[order_t], boxes[order_t], wrap_width)
    suppressed = torch.zeros(len(order_t), dtype=torch.bool)
    keep = []
    for i in range(len(order_t)):
        if suppressed[i]:
            continue
        keep.append(int(order_t[i]))
        suppressed |= iou[i] > iou_thresh
    return keep


def is_near_crop_edge(
    boxes: torch.Tensor, crop: Crop, image_width: int, image_height: int, *, panorama: bool
) -> torch.Tensor:
    """[N] bool: boxes (in crop pixels) touching a crop edge that is not a true image edge.

    A panorama has no left or right edge: a tile's side is always an inner cut.
    """
    if crop.whole_image:
        return torch.zeros(boxes.shape[0], dtype=torch.bool)
    boxes = boxes.to(torch.float64)
    tol = CROP_EDGE_TOLERANCE_PX
    near_left = (boxes[:, 0] <= tol) & (panorama or crop.x0 > 0)
    near_top = (boxes[:, 1] <= tol) & (crop.y0 > 0)
    near_right = (boxes[:, 2] >= crop.width - tol) & (panorama or crop.x1 < image_width)
    near_bottom = (boxes[:, 3] >= crop.height - tol) & (crop.y1 < image_height)
    return near_left | near_top | near_right | near_bottom


_EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


def remove_small_regions(pixels: np.ndarray, min_area: int) -> np.ndarray:
    """Fill holes and drop islands smaller than ``min_area`` pixels (8-connected), as SAM's
    ``remove_small_regions``; a mask made only of small islands keeps its largest one."""
    # One pixel of background around the box joins every background region that reaches the
    # box edge into a single outside region, which is never a hole.
    padded = np.pad(pixels, 1)
    background, count = ndimage.label(~padded, structure=_EIGHT_CONNECTED)
    if count > 1:
        sizes = np.bincount(background.ravel())
        outside = background[0, 0]
        holes = (sizes < min_area) & (np.arange(len(sizes)) != outside)
        holes[0] = False
        padded = padded | holes[background]
    islands, count = ndimage.label(padded, structure=_EIGHT_CONNECTED)
    if count > 1:
        sizes = np.bincount(islands.ravel())
        sizes[0] = 0
        keep = sizes >= min_area
        keep[0] = False
        if not keep.any():
            keep[int(np.argmax(sizes))] = True
        padded = keep[islands]
    return padded[1:-1, 1:-1]


def _cleaned(mask: Mask, min_area: int, image_width: int) -> Mask | None:
    pixels = remove_small_regions(mask.pixels, min_area)
    rows = np.flatnonzero(pixels.any(axis=1))
    cols = np.flatnonzero(pixels.any(axis=0))
    if rows.size == 0:
        return None
    y0, y1, x0, x1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    return Mask(
        x0=int((mask.x0 + x0) % image_width),
        y0=mask.y0 + int(y0),
        pixels=np.ascontiguousarray(pixels[y0:y1, x0:x1]),
        score=mask.score,
        stability=mask.stability,
        crop_area=mask.crop_area,
    )


# --------------------------------------------------------------------------------------------
# The model side: preprocessing, image embeddings, batched prompt decoding


class Sam2Predictor:
    """Wraps a loaded ``Sam2Model`` with SAM2's own preprocessing.

    SAM2 resizes every input to its square input size without keeping the aspect ratio and
    without padding (as ``Sam2ImageProcessor`` does), so its low-resolution masks map back to the
    crop by a plain resize, and grid points map to model pixels by ``grid * input_size``.
    """

    def __init__(
        self,
        model,
        *,
        input_size: int,
        mean: Sequence[float],
        std: Sequence[float],
        rescale_factor: float,
        device: torch.device,
        dtype: torch.dtype,
    ) -> None:
        self.model = model
        self.input_size = input_size
        self.device = device
        self.dtype = dtype
        # A compiled twin of the image encoder (scene_rpc.accel), or None: the model's own.
        self.encoder = None
        self._mean = torch.tensor(mean, device=device, dtype=torch.float32).view(1, 3, 1, 1)
        self._std = torch.tensor(std, device=device, dtype=torch.float32).view(1, 3, 1, 1)
        self._rescale = rescale_factor

    def preprocess(self, rgb: np.ndarray) -> torch.Tensor:
        image = torch.tensor(rgb, device=self.device)
        image = image.permute(2, 0, 1).unsqueeze(0).to(torch.float32)
        size = (self.input_size, self.input_size)
        if tuple(image.shape[-2:]) != size:
            image = F.interpolate(image, size=size, mode="bilinear", align_corners=False,
                                  antialias=True)
        image = (image * self._rescale - self._mean) / self._std
        return image.to(self.dtype)

    @torch.inference_mode()
    def embed(self, rgb: np.ndarray) -> list[torch.Tensor]:
        pixels = self.preprocess(rgb)
        if self.encoder is not None:
            embeddings = [e.to(self.device, self.dtype) for e in self.encoder(pixels)]
        else:
            embeddings = self.model.get_image_embeddings(pixels)
        if self.device.type == "cuda":
            # Stage timings must include the kernels, not just their launch.
            torch.cuda.synchronize(self.device)
        return embeddings

    @torch.inference_mode()
    def decode(
        self, embeddings: list[torch.Tensor], points: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Point prompts [B, 2] in [0, 1] -> (low-res mask logits [B*3, h, w], IoU [B*3]), float32.

        Each point is its own prompt with SAM's three candidate masks (whole, part, subpart).
        """
        # float32 even for a bfloat16 model: the prompt encoder normalises the coordinates before
        # casting, which keeps their precision.
        coords = (points * self.input_size).to(self.device, torch.float32)
        input_points = coords[None, :, None, :]  # [image, prompt, point, xy]
        input_labels = torch.ones(input_points.shape[:3], dtype=torch.int64, device=self.device)
        outputs = self.model(
            image_embeddings=embeddings,
            input_points=input_points,
            input_labels=input_labels,
            multimask_output=True,
        )
        logits = outputs.pred_masks[0].flatten(0, 1).to(torch.float32)
        iou = outputs.iou_scores[0].flatten(0, 1).to(torch.float32)
        return logits, iou


# --------------------------------------------------------------------------------------------
# The loop


@dataclass(frozen=True)
class AmgParams:
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
        cleaned = (_cleaned(m, params.min_region_area, width) for m in found)
        found = [m for m in cleaned if m is not None]
    result.masks = found
    result.decoding_s += time.perf_counter() - started
    return result

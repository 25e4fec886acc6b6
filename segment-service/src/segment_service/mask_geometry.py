"""Crops and the geometry on masks for SAM2's automatic mask generation (``mask_generation.py``):
where the crops go, compact masks, stability scores, boxes, box IoU and NMS (torchvision.ops is
unavailable here), the crop-edge test and small-region cleanup.

Panoramas are periodic in x: a tile may run past the right edge and wrap, and box IoU can compare
boxes either side of the seam.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy import ndimage

# Masks whose box comes this close (in pixels) to a tile edge that is not an image edge are cut
# off by the tile; the neighbouring tile or the whole-image pass sees them whole (SAM's value).
CROP_EDGE_TOLERANCE_PX = 20.0


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


def without_small_regions(mask: Mask, min_area: int, image_width: int) -> Mask | None:
    """``mask`` after :func:`remove_small_regions`, its box shrunk to what is left; None when
    nothing is."""
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

"""Fusing SAM2 masks with a per-pixel ADE20K class map: SAM's crisp boundaries, the semantic
model's meaning. Pure numpy, so it is tested with masks and class maps of known content.

1. Each mask takes the majority ADE20K class of all its pixels.
2. Where masks overlap, the pixel goes to the mask with the higher predicted IoU; between equally
   confident masks, to the smaller one (the more specific object over its surroundings).
3. Pixels under no mask keep their own semantic class.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from segment_service.amg import Mask
from segment_service.categories import CATEGORY_BY_ADE20K_ID, NUM_ADE20K_CLASSES


def _columns(mask: Mask, width: int) -> slice | np.ndarray:
    """The image columns under the mask's box; they wrap past the right edge for panoramas."""
    w = mask.pixels.shape[1]
    if mask.x0 + w <= width:
        return slice(mask.x0, mask.x0 + w)
    return (np.arange(mask.x0, mask.x0 + w)) % width


def _rows(mask: Mask) -> slice:
    return slice(mask.y0, mask.y0 + mask.pixels.shape[0])


def majority_class(class_map: np.ndarray, mask: Mask) -> int:
    """The most frequent class under the mask (ties go to the lower class index)."""
    under = class_map[_rows(mask), _columns(mask, class_map.shape[1])][mask.pixels]
    return int(np.bincount(under, minlength=NUM_ADE20K_CLASSES).argmax())


def paint_order(masks: Sequence[Mask]) -> list[int]:
    """Mask indices in painting order: later ones win overlaps (rule 2 of the module doc)."""
    return sorted(range(len(masks)), key=lambda i: (masks[i].score, -masks[i].area))


def owner_map(shape: tuple[int, int], masks: Sequence[Mask]) -> np.ndarray:
    """int32 [H, W]: the index of the mask each pixel belongs to after overlaps, -1 for none."""
    owners = np.full(shape, -1, dtype=np.int32)
    width = shape[1]
    for index in paint_order(masks):
        mask = masks[index]
        rows, cols = _rows(mask), _columns(mask, width)
        region = owners[rows, cols]
        region[mask.pixels] = index
        owners[rows, cols] = region  # a no-op for a slice view, the write-back for wrapped columns
    return owners


def fuse(class_map: np.ndarray, masks: Sequence[Mask]) -> tuple[np.ndarray, np.ndarray]:
    """ADE20K class map [H, W] + masks -> (fused class map [H, W], each mask's class [N])."""
    class_map = np.asarray(class_map, dtype=np.int16)
    mask_classes = np.array([majority_class(class_map, m) for m in masks], dtype=np.int16)
    if not masks:
        return class_map.copy(), mask_classes
    owners = owner_map(class_map.shape, masks)
    covered = owners >= 0
    fused = class_map.copy()
    fused[covered] = mask_classes[owners[covered]]
    return fused, mask_classes


@dataclass(frozen=True)
class LabelShare:
    ade20k_id: int
    pixel_fraction: float
    category: int


def categories_of(class_map: np.ndarray) -> np.ndarray:
    """uint8 [H, W] audio categories from an ADE20K class map."""
    return CATEGORY_BY_ADE20K_ID[class_map]


def label_shares(class_map: np.ndarray) -> list[LabelShare]:
    """The classes present, largest first, with their fraction of the pixels."""
    counts = np.bincount(class_map.ravel(), minlength=NUM_ADE20K_CLASSES)
    total = max(1, int(class_map.size))
    present = np.flatnonzero(counts)
    present = present[np.argsort(-counts[present], kind="stable")]
    return [
        LabelShare(int(i), float(counts[i]) / total, int(CATEGORY_BY_ADE20K_ID[i]))
        for i in present
    ]

"""Fusing SAM2 masks with a per-pixel ADE20K class map: SAM's crisp boundaries, the semantic
model's meaning. Pure numpy, so it is tested with masks and class maps of known content.

1. Where masks overlap, the pixel goes to the mask with the higher predicted IoU; between equally
   confident masks, to the smaller one (the more specific object over its surroundings).
2. Each mask takes the majority ADE20K class of the pixels it keeps. Counting only those keeps a
   background mask (a whole-room "wall" under the person in front of it) from being outvoted by
   the objects painted over it, and it is one pass over the image instead of one per mask.
3. Pixels under no mask keep their own semantic class.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from segment_service.categories import CATEGORY_BY_ADE20K_ID, NUM_ADE20K_CLASSES
from segment_service.mask_geometry import Mask


def _columns(mask: Mask, width: int) -> slice | np.ndarray:
    """The image columns under the mask's box; they wrap past the right edge for panoramas."""
    w = mask.pixels.shape[1]
    if mask.x0 + w <= width:
        return slice(mask.x0, mask.x0 + w)
    return (np.arange(mask.x0, mask.x0 + w)) % width


def _rows(mask: Mask) -> slice:
    return slice(mask.y0, mask.y0 + mask.pixels.shape[0])


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
        if isinstance(cols, slice):
            owners[rows, cols][mask.pixels] = index  # a view: written in place
        else:
            region = owners[rows, cols]  # wrapped columns: a copy, written back
            region[mask.pixels] = index
            owners[rows, cols] = region
    return owners


def fuse(class_map: np.ndarray, masks: Sequence[Mask]) -> tuple[np.ndarray, np.ndarray]:
    """ADE20K class map [H, W] + masks -> (fused class map [H, W], each mask's class [N]).

    A mask left with no pixels after the overlaps gets class -1.
    """
    class_map = np.asarray(class_map, dtype=np.int16)
    if not masks:
        return class_map.copy(), np.zeros(0, dtype=np.int16)
    owners = owner_map(class_map.shape, masks)
    covered = owners >= 0
    owned_by = owners[covered]
    # One histogram of (mask, class) pairs over the covered pixels; ties go to the lower class.
    votes = np.bincount(
        owned_by.astype(np.int64) * NUM_ADE20K_CLASSES + class_map[covered],
        minlength=len(masks) * NUM_ADE20K_CLASSES,
    ).reshape(len(masks), NUM_ADE20K_CLASSES)
    mask_classes = np.where(votes.any(axis=1), votes.argmax(axis=1), -1).astype(np.int16)
    fused = class_map.copy()
    fused[covered] = mask_classes[owned_by]
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

"""The six audio categories and the one table that sends every ADE20K class to one of them.

The table is keyed by the ADE20K-150 class index and name exactly as the transformers checkpoints
(MaskFormer, Mask2Former, SegFormer ADE20K configs) spell them in ``id2label``. A semantic model is
matched to it by label name, not by index, so a checkpoint that orders its classes differently still
gets the right categories.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

import numpy as np


class Category(enum.IntEnum):
    """Per-pixel audio category; the value is what travels in the uint8 category map."""

    BASS_SUBJECT = 0  # people, animals
    MID_ORGANIC = 1  # trees, plants, flowers, grass
    HIGH_SKY = 2  # sky, lights, lamps
    BEAT_GROUND = 3  # floor, ground, road, water, terrain, mountains
    MID_STRUCTURE = 4  # buildings, vehicles, furniture, appliances
    LOW_AMBIENT = 5  # walls and everything else


CATEGORY_NAMES: tuple[str, ...] = tuple(c.name for c in Category)

_S, _O, _K, _G, _T, _A = (
    Category.BASS_SUBJECT,
    Category.MID_ORGANIC,
    Category.HIGH_SKY,
    Category.BEAT_GROUND,
    Category.MID_STRUCTURE,
    Category.LOW_AMBIENT,
)

# (ADE20K index, name as in the checkpoints' id2label, category). Every one of the 150 classes
# appears exactly once, in index order; tests hold it to that and to the README's copy.
ADE20K_CATEGORY_TABLE: tuple[tuple[int, str, Category], ...] = (
    (0, "wall", _A),
    (1, "building", _T),
    (2, "sky", _K),
    (3, "floor", _G),
    (4, "tree", _O),
    (5, "ceiling", _A),
    (6, "road", _G),
    (7, "bed ", _T),
    (8, "windowpane", _A),
    (9, "grass", _O),
    (10, "cabinet", _T),
    (11, "sidewalk", _G),
    (12, "person", _S),
    (13, "earth", _G),
    (14, "door", _T),
    (15, "table", _T),
    (16, "mountain", _G),
    (17, "plant", _O),
    (18, "curtain", _A),
    (19, "chair", _T),
    (20, "car", _T),
    (21, "water", _G),
    (22, "painting", _A),
    (23, "sofa", _T),
    (24, "shelf", _T),
    (25, "house", _T),
    (26, "sea", _G),
    (27, "mirror", _A),
    (28, "rug", _G),
    (29, "field", _G),
    (30, "armchair", _T),
    (31, "seat", _T),
    (32, "fence", _T),
    (33, "desk", _T),
    (34, "rock", _G),
    (35, "wardrobe", _T),
    (36, "lamp", _K),
    (37, "bathtub", _T),
    (38, "railing", _T),
    (39, "cushion", _A),
    (40, "base", _A),
    (41, "box", _A),
    (42, "column", _T),
    (43, "signboard", _A),
    (44, "chest of drawers", _T),
    (45, "counter", _T),
    (46, "sand", _G),
    (47, "sink", _T),
    (48, "skyscraper", _T),
    (49, "fireplace", _T),
    (50, "refrigerator", _T),
    (51, "grandstand", _T),
    (52, "path", _G),
    (53, "stairs", _G),
    (54, "runway", _G),
    (55, "case", _A),
    (56, "pool table", _T),
    (57, "pillow", _A),
    (58, "screen door", _T),
    (59, "stairway", _G),
    (60, "river", _G),
    (61, "bridge", _T),
    (62, "bookcase", _T),
    (63, "blind", _A),
    (64, "coffee table", _T),
    (65, "toilet", _T),
    (66, "flower", _O),
    (67, "book", _A),
    (68, "hill", _G),
    (69, "bench", _T),
    (70, "countertop", _T),
    (71, "stove", _T),
    (72, "palm", _O),
    (73, "kitchen island", _T),
    (74, "computer", _T),
    (75, "swivel chair", _T),
    (76, "boat", _T),
    (77, "bar", _T),
    (78, "arcade machine", _T),
    (79, "hovel", _T),
    (80, "bus", _T),
    (81, "towel", _A),
    (82, "light", _K),
    (83, "truck", _T),
    (84, "tower", _T),
    (85, "chandelier", _K),
    (86, "awning", _T),
    (87, "streetlight", _K),
    (88, "booth", _T),
    (89, "television receiver", _T),
    (90, "airplane", _T),
    (91, "dirt track", _G),
    (92, "apparel", _A),
    (93, "pole", _T),
    (94, "land", _G),
    (95, "bannister", _T),
    (96, "escalator", _T),
    (97, "ottoman", _T),
    (98, "bottle", _A),
    (99, "buffet", _T),
    (100, "poster", _A),
    (101, "stage", _T),
    (102, "van", _T),
    (103, "ship", _T),
    (104, "fountain", _T),
    (105, "conveyer belt", _T),
    (106, "canopy", _T),
    (107, "washer", _T),
    (108, "plaything", _A),
    (109, "swimming pool", _G),
    (110, "stool", _T),
    (111, "barrel", _A),
    (112, "basket", _A),
    (113, "waterfall", _G),
    (114, "tent", _T),
    (115, "bag", _A),
    (116, "minibike", _T),
    (117, "cradle", _T),
    (118, "oven", _T),
    (119, "ball", _A),
    (120, "food", _A),
    (121, "step", _G),
    (122, "tank", _T),
    (123, "trade name", _A),
    (124, "microwave", _T),
    (125, "pot", _A),
    (126, "animal", _S),
    (127, "bicycle", _T),
    (128, "lake", _G),
    (129, "dishwasher", _T),
    (130, "screen", _A),
    (131, "blanket", _A),
    (132, "sculpture", _A),
    (133, "hood", _A),
    (134, "sconce", _K),
    (135, "vase", _A),
    (136, "traffic light", _K),
    (137, "tray", _A),
    (138, "ashcan", _A),
    (139, "fan", _A),
    (140, "pier", _T),
    (141, "crt screen", _T),
    (142, "plate", _A),
    (143, "monitor", _T),
    (144, "bulletin board", _A),
    (145, "shower", _T),
    (146, "radiator", _T),
    (147, "glass", _A),
    (148, "clock", _A),
    (149, "flag", _A),
)

NUM_ADE20K_CLASSES = len(ADE20K_CATEGORY_TABLE)

ADE20K_NAMES: tuple[str, ...] = tuple(name for _, name, _ in ADE20K_CATEGORY_TABLE)

#: uint8 lookup table: ADE20K index -> category value (``CATEGORY_BY_ADE20K_ID[class_map]``).
CATEGORY_BY_ADE20K_ID: np.ndarray = np.array(
    [int(category) for _, _, category in ADE20K_CATEGORY_TABLE], dtype=np.uint8
)
CATEGORY_BY_ADE20K_ID.setflags(write=False)


def normalize_label(name: str) -> str:
    """Label spelling differences that carry no meaning ("bed " vs "Bed")."""
    return " ".join(name.strip().lower().split())


_ADE20K_ID_BY_NAME: dict[str, int] = {
    normalize_label(name): index for index, name, _ in ADE20K_CATEGORY_TABLE
}


def ade20k_id(name: str) -> int | None:
    """The ADE20K index of a label name, or None for a name outside ADE20K-150."""
    return _ADE20K_ID_BY_NAME.get(normalize_label(name))


def ade20k_lookup(id2label: Mapping[int, str] | Mapping[str, str]) -> np.ndarray:
    """Model class index -> ADE20K index, for a model whose labels are the ADE20K-150 names.

    Matching by name lets any checkpoint with ADE20K labels serve, whatever its class order.
    Raises ValueError naming the labels outside ADE20K-150 (the category table needs the names).
    """
    labels = {int(index): name for index, name in id2label.items()}
    if not labels:
        raise ValueError("the semantic model's config has no id2label")
    lookup = np.zeros(max(labels) + 1, dtype=np.int16)
    unknown = []
    for index, name in labels.items():
        found = ade20k_id(name)
        if found is None:
            unknown.append(name)
        else:
            lookup[index] = found
    if unknown:
        shown = ", ".join(repr(n) for n in unknown[:8])
        raise ValueError(
            f"the semantic model's labels are not ADE20K-150 class names ({len(unknown)} unknown, "
            f"e.g. {shown}); SEG_MODEL must be a model trained on ADE20K-150"
        )
    return lookup

"""Fusion of SAM2 masks with the semantic class map, on masks and class maps of known content."""

from __future__ import annotations

import numpy as np
import pytest

from segment_service.categories import Category, ade20k_id
from segment_service.fusion import categories_of, fuse, label_shares, owner_map
from segment_service.mask_geometry import Mask

FLOOR = ade20k_id("floor")
PERSON = ade20k_id("person")
SKY = ade20k_id("sky")
TREE = ade20k_id("tree")
WALL = ade20k_id("wall")


def _mask(x0: int, y0: int, x1: int, y1: int, score: float = 0.9) -> Mask:
    return Mask(x0=x0, y0=y0, pixels=np.ones((y1 - y0, x1 - x0), dtype=bool), score=score,
                stability=1.0, crop_area=1)


def _halves(left: int, right: int, shape=(10, 20)) -> np.ndarray:
    class_map = np.full(shape, left, dtype=np.int16)
    class_map[:, shape[1] // 2:] = right
    return class_map


def test_a_mask_straddling_two_regions_takes_the_majority():
    class_map = _halves(FLOOR, PERSON)
    # 6 columns of floor, 4 of person.
    fused, classes = fuse(class_map, [_mask(4, 0, 14, 10)])
    assert classes.tolist() == [FLOOR]
    assert (fused[:, 4:14] == FLOOR).all()
    # Outside the mask the person stays a person.
    assert (fused[:, 14:] == PERSON).all()


def test_uncovered_pixels_keep_their_semantic_class():
    rng = np.random.default_rng(0)
    class_map = rng.integers(0, 150, size=(12, 16)).astype(np.int16)
    fused, _ = fuse(class_map, [_mask(0, 0, 4, 4)])
    assert np.array_equal(fused[4:], class_map[4:])
    assert np.array_equal(fused[:, 4:], class_map[:, 4:])
    assert np.array_equal(fuse(class_map, [])[0], class_map)


def test_overlaps_go_to_the_more_confident_mask():
    class_map = _halves(SKY, TREE)
    sky_mask = _mask(0, 0, 12, 10, score=0.95)  # majority sky, reaches 2 columns into the tree
    tree_mask = _mask(8, 0, 20, 10, score=0.80)  # majority tree, reaches 2 columns into the sky
    fused, classes = fuse(class_map, [tree_mask, sky_mask])
    assert classes.tolist() == [TREE, SKY]
    # The overlap, columns 8..11, belongs to the more confident sky mask.
    assert (fused[:, 8:12] == SKY).all()
    assert (fused[:, 12:] == TREE).all()

    fused, _ = fuse(class_map, [_mask(0, 0, 12, 10, score=0.7), _mask(8, 0, 20, 10, score=0.9)])
    assert (fused[:, 8:12] == TREE).all()


def test_equally_confident_overlaps_go_to_the_smaller_mask():
    class_map = np.full((20, 20), WALL, dtype=np.int16)
    class_map[8:12, 8:12] = PERSON
    room = _mask(0, 0, 20, 20, score=0.9)  # majority wall
    person_pixels = np.zeros((6, 6), dtype=bool)
    person_pixels[1:5, 1:5] = True
    person = Mask(x0=7, y0=7, pixels=person_pixels, score=0.9, stability=1.0, crop_area=1)
    fused, _ = fuse(class_map, [person, room])
    assert (fused[8:12, 8:12] == PERSON).all()
    assert (fused[:8] == WALL).all()
    # Order of the inputs does not matter.
    assert np.array_equal(fuse(class_map, [room, person])[0], fused)


def test_a_background_mask_is_not_outvoted_by_the_objects_in_front_of_it():
    # A person covering 60% of the picture, and SAM's whole-scene mask behind them.
    class_map = np.full((10, 10), WALL, dtype=np.int16)
    class_map[:, :6] = PERSON
    scene = _mask(0, 0, 10, 10, score=0.85)
    person = _mask(0, 0, 6, 10, score=0.95)
    fused, classes = fuse(class_map, [scene, person])
    assert classes.tolist() == [WALL, PERSON]
    assert (fused[:, 6:] == WALL).all() and (fused[:, :6] == PERSON).all()


def test_a_mask_hidden_by_better_ones_gets_no_class():
    class_map = np.full((10, 10), SKY, dtype=np.int16)
    _, classes = fuse(class_map, [_mask(2, 2, 4, 4, score=0.8), _mask(0, 0, 10, 10, score=0.9)])
    assert classes.tolist() == [-1, SKY]


def test_panorama_masks_wrap_past_the_right_edge():
    class_map = np.full((4, 10), SKY, dtype=np.int16)
    class_map[:, 8:] = TREE
    class_map[:, :1] = TREE
    # Columns 8, 9, 0 and 1: three of tree, one of sky.
    wrapped = Mask(x0=8, y0=0, pixels=np.ones((4, 4), dtype=bool), score=0.9, stability=1.0,
                   crop_area=1)
    fused, classes = fuse(class_map, [wrapped])
    assert classes.tolist() == [TREE]
    assert (fused[:, [8, 9, 0, 1]] == TREE).all()
    assert (fused[:, 2:8] == SKY).all()
    owners = owner_map((4, 10), [wrapped])
    assert (owners[:, [8, 9, 0, 1]] == 0).all() and (owners[:, 2:8] == -1).all()


def test_only_mask_pixels_vote_and_are_painted():
    class_map = _halves(FLOOR, PERSON)
    pixels = np.zeros((10, 10), dtype=bool)
    pixels[:, 7:] = True  # inside the box, only columns 12..14 (person) belong to the mask
    mask = Mask(x0=5, y0=0, pixels=pixels, score=0.9, stability=1.0, crop_area=1)
    fused, classes = fuse(class_map, [mask])
    assert classes.tolist() == [PERSON]
    assert (fused[:, 5:10] == FLOOR).all()


def test_categories_and_label_shares():
    class_map = np.array([[SKY, SKY, SKY, PERSON], [FLOOR, FLOOR, WALL, PERSON]], dtype=np.int16)
    categories = categories_of(class_map)
    assert categories.dtype == np.uint8
    assert categories.tolist() == [
        [Category.HIGH_SKY] * 3 + [Category.BASS_SUBJECT],
        [Category.BEAT_GROUND] * 2 + [Category.LOW_AMBIENT, Category.BASS_SUBJECT],
    ]
    shares = label_shares(class_map)
    # Ties (floor and person, two pixels each) go to the lower ADE20K index.
    assert [s.ade20k_id for s in shares] == [SKY, FLOOR, PERSON, WALL]
    assert shares[0].pixel_fraction == pytest.approx(3 / 8)
    assert sum(s.pixel_fraction for s in shares) == pytest.approx(1.0)
    assert {s.ade20k_id: s.category for s in shares}[PERSON] == Category.BASS_SUBJECT
    fractions = [s.pixel_fraction for s in shares]
    assert fractions == sorted(fractions, reverse=True)

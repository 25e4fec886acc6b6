"""Crops and mask geometry, against brute-force references."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from segment_service.mask_geometry import (
    Crop,
    Mask,
    box_iou,
    crop_pixels,
    is_near_crop_edge,
    masks_to_boxes,
    nms,
    plan_crops,
    remove_small_regions,
    stability_scores,
)


def test_masks_to_boxes_matches_numpy_and_zeroes_empty_masks():
    rng = np.random.default_rng(0)
    masks = np.zeros((5, 20, 30), dtype=bool)
    for i in range(4):
        y0, x0 = rng.integers(0, 15), rng.integers(0, 25)
        masks[i, y0:y0 + rng.integers(1, 5), x0:x0 + rng.integers(1, 5)] = True
    boxes = masks_to_boxes(torch.from_numpy(masks)).numpy()
    for i in range(4):
        ys, xs = np.nonzero(masks[i])
        assert boxes[i].tolist() == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
    assert boxes[4].tolist() == [0, 0, 0, 0]


def test_stability_score_is_the_iou_of_two_thresholds():
    logits = torch.tensor([[[3.0, 0.5, -0.5, -3.0]]])
    # > +1: one pixel; > -1: three pixels.
    assert stability_scores(logits, 0.0, 1.0).item() == pytest.approx(1 / 3)
    assert stability_scores(torch.full((1, 2, 2), -5.0), 0.0, 1.0).item() == 0.0


def test_box_iou_and_its_horizontal_wrap():
    a = torch.tensor([[0, 0, 10, 10]])
    b = torch.tensor([[5, 0, 15, 10], [20, 20, 30, 30]])
    assert box_iou(a, b)[0].tolist() == pytest.approx([50 / 150, 0.0])
    # A box just left of the seam and its duplicate drawn past the right edge of a 100-wide image.
    left = torch.tensor([[0, 0, 10, 10]])
    past_edge = torch.tensor([[100, 0, 110, 10]])
    assert box_iou(left, past_edge)[0, 0].item() == 0.0
    assert box_iou(left, past_edge, wrap_width=100)[0, 0].item() == pytest.approx(1.0)


def _reference_nms(boxes: np.ndarray, order: list[int], thresh: float) -> list[int]:
    keep: list[int] = []
    for i in order:
        ok = True
        for j in keep:
            x0, y0 = max(boxes[i, 0], boxes[j, 0]), max(boxes[i, 1], boxes[j, 1])
            x1, y1 = min(boxes[i, 2], boxes[j, 2]), min(boxes[i, 3], boxes[j, 3])
            inter = max(0, x1 - x0) * max(0, y1 - y0)
            area = lambda k: (boxes[k, 2] - boxes[k, 0]) * (boxes[k, 3] - boxes[k, 1])  # noqa: E731
            if inter / (area(i) + area(j) - inter) > thresh:
                ok = False
                break
        if ok:
            keep.append(i)
    return keep


def test_nms_matches_a_brute_force_reference():
    rng = np.random.default_rng(1)
    xy = rng.integers(0, 50, size=(60, 2))
    wh = rng.integers(5, 30, size=(60, 2))
    boxes = np.concatenate([xy, xy + wh], axis=1)
    order = list(rng.permutation(60))
    for thresh in (0.3, 0.7):
        assert nms(torch.from_numpy(boxes), order, thresh) == _reference_nms(boxes, order, thresh)


def test_remove_small_regions_fills_holes_and_drops_islands():
    mask = np.zeros((20, 20), dtype=bool)
    mask[2:12, 2:12] = True
    mask[6, 6] = False  # a one-pixel hole
    mask[16, 16] = True  # a one-pixel island
    cleaned = remove_small_regions(mask, min_area=5)
    assert cleaned[6, 6]
    assert not cleaned[16, 16]
    assert cleaned[2:12, 2:12].all()


def test_background_at_the_box_edge_is_not_a_hole():
    # An L shape: the notch is outside the mask, connected to the surroundings.
    mask = np.ones((10, 10), dtype=bool)
    mask[:3, 7:] = False
    assert np.array_equal(remove_small_regions(mask, min_area=50), mask)


def test_a_mask_of_small_islands_keeps_its_largest():
    mask = np.zeros((10, 10), dtype=bool)
    mask[0, 0] = True
    mask[5:7, 5:7] = True
    cleaned = remove_small_regions(mask, min_area=10)
    assert cleaned.sum() == 4 and cleaned[5:7, 5:7].all()


def test_small_images_are_segmented_whole():
    crops = plan_crops(800, 600, panorama=False, crop_size_px=1024, overlap=0.25,
                       points_per_side=32, crop_points_per_side=16)
    assert crops == [Crop(0, 0, 800, 600, 32, whole_image=True)]


def _coverage(crops: list[Crop], width: int, height: int) -> np.ndarray:
    covered = np.zeros((height, width), dtype=int)
    for crop in crops:
        covered[crop.y0:crop.y1, np.arange(crop.x0, crop.x1) % width] += 1
    return covered


def test_large_images_add_overlapping_square_tiles():
    crops = plan_crops(2048, 1024, panorama=False, crop_size_px=1024, overlap=0.25,
                       points_per_side=32, crop_points_per_side=16)
    whole, tiles = crops[0], crops[1:]
    assert whole.whole_image and whole.points_per_side == 32
    assert len(tiles) == 3
    assert all(t.width == t.height == 1024 and t.points_per_side == 16 for t in tiles)
    assert all(t.x1 <= 2048 for t in tiles)
    assert (_coverage(tiles, 2048, 1024) >= 1).all()
    starts = sorted(t.x0 for t in tiles)
    assert all(b - a <= 1024 - 256 for a, b in itertools.pairwise(starts))


def test_panorama_tiles_wrap_around_the_seam():
    width, height = 2048, 1024
    tiles = plan_crops(width, height, panorama=True, crop_size_px=1024, overlap=0.25,
                       points_per_side=32, crop_points_per_side=16)[1:]
    assert any(t.x1 > width for t in tiles), "one tile must straddle the seam"
    assert (_coverage(tiles, width, height) >= 1).all()
    # Every column, the seam included, lies at least the overlap inside some tile.
    margin = np.zeros(width)
    for t in tiles:
        cols = np.arange(t.x0, t.x1)
        inside = np.minimum(cols - t.x0, t.x1 - 1 - cols)
        np.maximum.at(margin, cols % width, inside)
    assert margin.min() >= 256 // 2 - 1


def test_small_panoramas_still_get_wrapping_tiles():
    tiles = plan_crops(256, 128, panorama=True, crop_size_px=1024, overlap=0.25,
                       points_per_side=8, crop_points_per_side=4)[1:]
    assert tiles and all(t.height == 128 for t in tiles)
    assert any(t.x1 > 256 for t in tiles)


def test_crop_pixels_wrap_past_the_right_edge():
    rgb = np.arange(10)[None, :, None].repeat(2, axis=0).repeat(3, axis=2)
    pixels = crop_pixels(rgb, Crop(8, 0, 12, 2, 1))
    assert pixels[0, :, 0].tolist() == [8, 9, 0, 1]


def test_masks_cut_by_an_inner_tile_edge_are_flagged():
    crop = Crop(100, 0, 200, 100, 4)
    boxes = torch.tensor([[0, 30, 10, 40], [40, 40, 60, 60], [90, 95, 100, 100]])
    flagged = is_near_crop_edge(boxes, crop, 300, 100, panorama=False)
    # Left edge of the crop is inner (x0=100 > 0); bottom edge is the image's (y1=100=height).
    assert flagged.tolist() == [True, False, True]
    whole = Crop(0, 0, 300, 100, 4, whole_image=True)
    assert not is_near_crop_edge(boxes, whole, 300, 100, panorama=False).any()
    first = Crop(0, 0, 100, 100, 4)
    assert is_near_crop_edge(boxes[:1], first, 300, 100, panorama=False).tolist() == [False]
    assert is_near_crop_edge(boxes[:1], first, 300, 100, panorama=True).tolist() == [True]

def test_mask_area_is_counted():
    mask = Mask(x0=0, y0=0, pixels=np.eye(4, dtype=bool), score=1.0, stability=1.0, crop_area=16)
    assert mask.area == 4
    assert mask.box == (0, 0, 4, 4)

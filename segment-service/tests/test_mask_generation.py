"""The automatic mask generation loop, against a fake predictor with masks of known shape."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from segment_service.mask_generation import AmgParams, WorkCancelled, count_batches, generate_masks
from segment_service.mask_geometry import Crop


def _params(**overrides) -> AmgParams:
    values = dict(points_per_batch=4, pred_iou_thresh=0.0, stability_score_thresh=0.0,
                  box_nms_thresh=0.7, crop_nms_thresh=0.7, min_region_area=0)
    values.update(overrides)
    return AmgParams(**values)


def test_prompts_are_decoded_in_batches_with_progress(fake_predictor_class):
    predictor = fake_predictor_class()
    rgb = np.zeros((64, 64, 3), dtype=np.uint8)
    crops = [Crop(0, 0, 64, 64, 3, whole_image=True)]
    reports = []
    result = generate_masks(predictor, rgb, crops, _params(points_per_batch=4),
                            on_progress=lambda *r: reports.append(r))
    assert predictor.decoded_batches == [4, 4, 1]
    assert result.batches == 3 == count_batches(crops, 4)
    assert reports[0] == ("sam_encoder", 1, 1)
    assert [r for r in reports if r[0] == "mask_decoding"] == [
        ("mask_decoding", 1, 3), ("mask_decoding", 2, 3), ("mask_decoding", 3, 3)]
    assert result.masks and all(m.pixels.any() for m in result.masks)


def test_low_quality_candidates_are_filtered(fake_predictor_class):
    predictor = fake_predictor_class(ious=(0.9, 0.5, 0.2))
    rgb = np.zeros((64, 64, 3), dtype=np.uint8)
    crops = [Crop(0, 0, 64, 64, 1, whole_image=True)]
    result = generate_masks(predictor, rgb, crops, _params(pred_iou_thresh=0.6))
    assert [round(m.score, 2) for m in result.masks] == [0.9]
    # The one survivor is the small disc around the single centre prompt.
    mask = result.masks[0]
    assert mask.area == pytest.approx(np.pi * 6**2, rel=0.25)
    assert mask.box[0] < 32 < mask.box[2]


def test_unstable_candidates_are_filtered():
    class Blurry:
        input_size = 64

        def embed(self, rgb):
            return None

        def decode(self, embeddings, points):
            # A ramp: its extent moves a lot with the threshold, so it is unstable.
            ramp = torch.linspace(-4, 4, 16).repeat(16, 1)
            return torch.stack([ramp] * 3 * len(points)), torch.full((3 * len(points),), 0.9)

    rgb = np.zeros((64, 64, 3), dtype=np.uint8)
    crops = [Crop(0, 0, 64, 64, 1, whole_image=True)]
    assert generate_masks(Blurry(), rgb, crops, _params(stability_score_thresh=0.9)).masks == []
    assert generate_masks(Blurry(), rgb, crops, _params(stability_score_thresh=0.0)).masks


def test_duplicates_across_crops_keep_the_smaller_crop(fake_predictor_class):
    predictor = fake_predictor_class(radii=(6.0,) * 3, ious=(0.9, 0.9, 0.9))
    rgb = np.zeros((128, 128, 3), dtype=np.uint8)
    # One prompt per crop, both at the image centre: the same disc found twice.
    crops = [Crop(0, 0, 128, 128, 1, whole_image=True), Crop(32, 32, 96, 96, 1)]
    result = generate_masks(predictor, rgb, crops, _params())
    assert len(result.masks) == 1
    assert result.masks[0].crop_area == 64 * 64


def test_tile_masks_are_placed_in_image_coordinates(fake_predictor_class):
    predictor = fake_predictor_class(radii=(6.0,) * 3)
    rgb = np.zeros((64, 256, 3), dtype=np.uint8)
    crops = [Crop(128, 0, 192, 64, 1)]
    mask = generate_masks(predictor, rgb, crops, _params()).masks[0]
    x0, y0, x1, y1 = mask.box
    assert 128 < x0 < 160 < x1 < 192 and 0 < y0 < 32 < y1 < 64


def test_panorama_tile_masks_wrap_to_the_left_edge(fake_predictor_class):
    predictor = fake_predictor_class(radii=(6.0,) * 3)
    rgb = np.zeros((64, 200, 3), dtype=np.uint8)
    # A tile from x=168 to 232 (wraps to 32): its centre prompt at x=200 is the seam itself.
    crops = [Crop(168, 0, 232, 64, 1)]
    mask = generate_masks(predictor, rgb, crops, _params(), panorama=True).masks[0]
    assert 168 < mask.x0 < 200 and mask.box[2] > 200


def test_cancellation_stops_between_batches(fake_predictor_class):
    predictor = fake_predictor_class()
    cancel = threading.Event()
    rgb = np.zeros((64, 64, 3), dtype=np.uint8)
    crops = [Crop(0, 0, 64, 64, 8, whole_image=True)]

    def on_progress(stage, done, total):
        if stage == "mask_decoding" and done == 2:
            cancel.set()

    with pytest.raises(WorkCancelled, match="after 2/16"):
        generate_masks(predictor, rgb, crops, _params(points_per_batch=4),
                       on_progress=on_progress, cancel=cancel)
    assert len(predictor.decoded_batches) == 2


def test_small_regions_are_cleaned_from_final_masks(fake_predictor_class):
    class Speckled(fake_predictor_class):
        def decode(self, embeddings, points):
            logits, iou = super().decode(embeddings, points)
            logits[:, 0, 0] = 10.0  # an isolated speck far from every disc
            return logits, iou

    predictor = Speckled(radii=(8.0,) * 3)
    rgb = np.zeros((64, 64, 3), dtype=np.uint8)
    crops = [Crop(0, 0, 64, 64, 1, whole_image=True)]
    raw = generate_masks(predictor, rgb, crops, _params(min_region_area=0)).masks[0]
    clean = generate_masks(predictor, rgb, crops, _params(min_region_area=30)).masks[0]
    assert raw.box[:2] == (0, 0)
    assert clean.box[0] > 10 and clean.area < raw.area

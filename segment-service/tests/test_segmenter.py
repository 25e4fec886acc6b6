"""The request-level pieces of the segmenter: quality knobs, crop plans, the input cap."""

from __future__ import annotations

import numpy as np
import pytest

from scene_rpc.errors import InvalidInput
from segment_service.models import SamModel, SemanticModel
from segment_service.segmenter import Knobs, Segmenter, downscaled, upscaled_nearest
from segment_service.settings import CropMode, Mode, PromptStrategy


def test_knobs_take_enum_names_and_refuse_bad_values():
    knobs = Knobs(prompt_strategy="grid", crop_mode="off")
    assert knobs.prompt_strategy is PromptStrategy.GRID
    assert knobs.crop_mode is CropMode.OFF
    for bad in (dict(prompt_strategy="random"), dict(crop_mode="on"), dict(points_per_side=-1),
                dict(crop_points_per_side=129), dict(max_input_side_px=63)):
        with pytest.raises(InvalidInput):
            Knobs(**bad)


@pytest.fixture
def segmenter(make_settings):
    settings = make_settings(points_per_side=6, crop_points_per_side=3, crop_size_px=512)
    made = Segmenter(settings, SamModel(settings), SemanticModel(settings))
    yield made
    made.close()


def test_request_density_and_crop_mode_override_the_settings(segmenter):
    crops = segmenter.plan(1024, 768, Mode.HYBRID, panorama=False)
    assert len(crops) > 1 and crops[0].points_per_side == 6 and crops[1].points_per_side == 3
    crops = segmenter.plan(1024, 768, Mode.HYBRID, False, Knobs(points_per_side=9,
                                                                 crop_points_per_side=2))
    assert crops[0].points_per_side == 9 and crops[1].points_per_side == 2
    whole = segmenter.plan(1024, 768, Mode.HYBRID, False, Knobs(crop_mode=CropMode.OFF))
    assert len(whole) == 1 and whole[0].whole_image
    assert segmenter.plan(1024, 768, Mode.SEMANTIC, False) == []


def test_semantic_prompts_per_crop_and_the_grid_as_none(segmenter):
    class_map = np.zeros((768, 1024), dtype=np.int16)
    class_map[300:500, 200:400] = 12
    crops = segmenter.plan(1024, 768, Mode.HYBRID, panorama=False)
    prompts = segmenter.prompts(class_map, crops, Knobs(prompt_strategy=PromptStrategy.SEMANTIC))
    assert len(prompts) == len(crops)
    assert all(0 < len(p) <= c.points_per_side**2 for p, c in zip(prompts, crops, strict=True))
    assert segmenter.prompts(class_map, crops, Knobs(prompt_strategy="grid")) is None


def test_the_cap_keeps_the_aspect_and_nearest_upscaling_restores_the_size():
    rgb = np.zeros((300, 800, 3), np.uint8)
    assert downscaled(rgb, 0) is rgb and downscaled(rgb, 800) is rgb
    assert downscaled(rgb, 400).shape == (150, 400, 3)
    labels = np.array([[0, 1], [2, 3]], np.uint8)
    up = upscaled_nearest(labels, (4, 6))
    assert up.shape == (4, 6)
    assert (up[:2, :3] == 0).all() and (up[2:, 3:] == 3).all()

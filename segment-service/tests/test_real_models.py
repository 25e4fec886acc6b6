"""With the real pretrained weights (skipped unless they are in the local Hugging Face cache): sky
becomes HIGH_SKY and the cat becomes BASS_SUBJECT on real photos."""

from __future__ import annotations

import numpy as np
import pytest

from scene_rpc.profiles import PROFILES
from segment_service.categories import Category
from segment_service.models import SamModel, SemanticModel
from segment_service.segmenter import Segmenter
from segment_service.settings import Mode, Settings
from tests.plugin import skip_unless_cached

# Every profile's pair of models (scene_rpc.profiles), each skipped unless cached.
PROFILE_MODELS = [
    pytest.param((p.sam_model, p.semantic_model), id=name,
                 marks=skip_unless_cached(p.sam_model, p.semantic_model))
    for name, p in PROFILES.items()
]

pytestmark = [pytest.mark.real_models, pytest.mark.slow]


@pytest.fixture(scope="module", params=PROFILE_MODELS)
def settings(request) -> Settings:
    sam, semantic = request.param
    # SAM2's released automatic-mask settings; a coarser grid keeps the CPU run short.
    return Settings(sam_model=sam, semantic_model=semantic, points_per_side=16,
                    crop_points_per_side=8)


@pytest.mark.parametrize("mode", [Mode.HYBRID, Mode.SEMANTIC, Mode.SAM])
async def test_sky_and_cat(settings, photo_rgb, mode):
    segmenter = Segmenter(settings, SamModel(settings), SemanticModel(settings))
    try:
        sky_photo = photo_rgb("outdoor_colosseum_sky")
        result = await segmenter.segment(sky_photo, mode=mode)
        # The top sixth of this photo is open sky (see images/SOURCE.txt).
        band = result.categories[: sky_photo.shape[0] // 6]
        assert np.mean(band == Category.HIGH_SKY) > 0.6

        cat = photo_rgb("animal_cat_chelsea")
        result = await segmenter.segment(cat, mode=mode)
        height, width = cat.shape[:2]
        face = result.categories[height // 4: 3 * height // 4, width // 4: 3 * width // 4]
        assert np.mean(face == Category.BASS_SUBJECT) > 0.6
    finally:
        segmenter.close()

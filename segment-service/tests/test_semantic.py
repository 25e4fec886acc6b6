"""The semantic pass: any ADE20K model through configuration, class maps at input resolution."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from scene_rpc.errors import ModelUnavailable
from segment_service.models import SemanticModel
from segment_service.semantic import candidate_classes, nearest_argmax, upsample_argmax


@pytest.mark.parametrize("seed", range(8))
def test_pruned_chunked_upsampling_equals_the_full_argmax(seed):
    generator = torch.Generator().manual_seed(seed)
    low_h, low_w = (int(n) for n in torch.randint(1, 24, (2,), generator=generator))
    scores = torch.randn(150, low_h, low_w, generator=generator) * 0.1
    # A few dominant classes, as a real model's output has.
    dominant = torch.randint(0, 150, (5,), generator=generator)
    scores[dominant] += 3 * torch.rand(5, low_h, low_w, generator=generator)
    size = tuple(int(n) for n in torch.randint(1, 120, (2,), generator=generator))
    full = F.interpolate(scores[None], size=size, mode="bilinear", align_corners=False)
    assert torch.equal(upsample_argmax(scores, size), full[0].argmax(dim=0))
    assert len(candidate_classes(scores)) < 150


def test_nearest_argmax_repeats_the_coarse_classes():
    scores = torch.zeros(3, 2, 2)
    scores[0, 0, 0] = scores[1, 0, 1] = scores[2, 1, :] = 1.0
    classes = nearest_argmax(scores, (4, 6))
    assert classes.tolist() == [[0, 0, 0, 1, 1, 1]] * 2 + [[2] * 6] * 2


@pytest.mark.parametrize("model", ["maskformer", "segformer"])
async def test_any_ade20k_model_serves_through_configuration(make_settings, tiny_models_dir,
                                                             photo_rgb, model):
    semantic = SemanticModel(make_settings(semantic_model=str(tiny_models_dir / model)))
    result = await semantic.load()
    assert result.device == "cpu" and result.dtype == "float32"
    assert semantic.label_names[7] == "bed "
    rgb = photo_rgb("animal_cat_chelsea")
    for panorama in (False, True):
        class_map = semantic.predictor.class_map(rgb, panorama=panorama)
        assert class_map.shape == rgb.shape[:2] and class_map.dtype == np.int16
        assert 0 <= class_map.min() and class_map.max() < 150
    coarse = semantic.predictor.class_map(rgb, full_resolution=False)
    assert coarse.shape == rgb.shape[:2]


async def test_a_model_without_ade20k_labels_fails_to_load(make_settings, tmp_path):
    from transformers import SegformerConfig, SegformerForSemanticSegmentation

    config = SegformerConfig(depths=[1, 1, 1, 1], hidden_sizes=[8, 8, 8, 8],
                             num_attention_heads=[1, 1, 1, 1], decoder_hidden_size=8,
                             id2label={0: "background", 1: "road"}, label2id={})
    SegformerForSemanticSegmentation(config).save_pretrained(tmp_path)
    semantic = SemanticModel(make_settings(semantic_model=str(tmp_path)))
    with pytest.raises(ModelUnavailable, match="not ADE20K-150"):
        await semantic.load()
    assert "not ADE20K-150" in semantic.info().last_error


async def test_a_model_of_another_task_fails_to_load(make_settings, tiny_models_dir):
    semantic = SemanticModel(make_settings(semantic_model=str(tiny_models_dir / "sam2")))
    with pytest.raises(ModelUnavailable, match="not a semantic or universal segmentation"):
        await semantic.load()

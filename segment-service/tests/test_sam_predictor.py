"""SAM2's model side: preprocessing against its definition, decoding shapes on the tiny model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from segment_service.sam_predictor import Sam2Predictor

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def _predictor(model=None, input_size: int = 32) -> Sam2Predictor:
    return Sam2Predictor(model, input_size=input_size, mean=MEAN, std=STD, rescale_factor=1 / 255,
                         device=torch.device("cpu"), dtype=torch.float32)


def test_any_shape_becomes_the_square_input_rescaled_and_normalised():
    rgb = np.empty((30, 50, 3), dtype=np.uint8)
    rgb[...] = (255, 0, 51)
    pixels = _predictor().preprocess(rgb)
    assert pixels.shape == (1, 3, 32, 32)
    expected = (np.array([1.0, 0.0, 0.2]) - MEAN) / STD
    assert pixels[0].mean(dim=(1, 2)).tolist() == pytest.approx(expected.tolist(), abs=1e-5)
    assert pixels[0].std(dim=(1, 2)).max().item() < 1e-5


def test_an_image_at_the_input_size_is_not_resampled():
    rgb = np.random.default_rng(0).integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
    pixels = _predictor().preprocess(rgb)[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(pixels, (rgb / 255 - MEAN) / STD, atol=1e-5)


def test_each_point_decodes_to_three_candidates(tiny_models_dir):
    from transformers import Sam2Model

    model = Sam2Model.from_pretrained(tiny_models_dir / "sam2").eval()
    predictor = _predictor(model, int(model.config.prompt_encoder_config.image_size))
    rgb = np.random.default_rng(1).integers(0, 256, size=(48, 64, 3), dtype=np.uint8)
    embeddings = predictor.embed(rgb)
    logits, iou = predictor.decode(embeddings, torch.rand(5, 2))
    assert logits.dtype == iou.dtype == torch.float32
    assert logits.shape[0] == iou.shape[0] == 15 and logits.ndim == 3

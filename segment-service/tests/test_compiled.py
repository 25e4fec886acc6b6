"""The compiled runtime (OpenVINO) for SAM2's image encoder and the semantic models, on the tiny
models of the real architectures: exported at load, read back from the cache by the next load,
and within 1e-4 (relative L2) of eager PyTorch on the same weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from scene_rpc.ml.accel import runtime_version
from scene_rpc.settings import Runtime
from segment_service.compiled import CompiledDecoding
from segment_service.models import SamModel, SemanticModel

pytestmark = pytest.mark.skipif(runtime_version(Runtime.OPENVINO) is None,
                                reason="openvino is not installed")


def relative_l2(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.linalg.vector_norm(a.float() - b.float())
                 / torch.linalg.vector_norm(b.float()).clamp_min(1e-12))


def photo(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (48, 72, 3), dtype=np.uint8)


async def test_the_sam2_encoder_runs_compiled_and_agrees_with_eager(make_settings, tmp_path):
    eager = SamModel(make_settings(runtime="torch"))
    compiled = SamModel(make_settings(runtime="openvino", runtime_cache_dir=tmp_path))
    await eager.ensure_loaded()
    await compiled.ensure_loaded()
    assert compiled.predictor.encoder is not None and eager.predictor.encoder is None
    assert "openvino" in compiled.info().device
    ours, reference = compiled.predictor.embed(photo()), eager.predictor.embed(photo())
    assert len(ours) == len(reference)
    for a, b in zip(ours, reference, strict=True):
        assert a.shape == b.shape and relative_l2(a, b) < 1e-4
    again = SamModel(make_settings(runtime="openvino", runtime_cache_dir=tmp_path))
    await again.ensure_loaded()
    assert list(again.predictor.encoder.sources.values()) == ["cached"]



async def test_the_sam2_mask_decoder_runs_compiled_padded_and_agrees_with_eager(
        make_settings, tmp_path):
    eager = SamModel(make_settings(runtime="torch"))
    compiled = SamModel(make_settings(runtime="openvino", runtime_cache_dir=tmp_path,
                                      points_per_batch=4))
    await eager.ensure_loaded()
    await compiled.ensure_loaded()
    assert isinstance(compiled.predictor.model, CompiledDecoding)
    embeddings = eager.predictor.embed(photo())
    # A full batch and a short last one (padded to the compiled batch of 4).
    for points in (torch.rand(4, 2), torch.rand(3, 2)):
        logits, iou = compiled.predictor.decode(embeddings, points)
        reference_logits, reference_iou = eager.predictor.decode(embeddings, points)
        assert logits.shape == reference_logits.shape and iou.shape == reference_iou.shape
        assert relative_l2(logits, reference_logits) < 1e-4
        assert relative_l2(iou, reference_iou) < 1e-4
    # Anything but a batch of one-point prompts is the model's own call.
    too_many = torch.rand(6, 2)
    logits, _ = compiled.predictor.decode(embeddings, too_many)
    assert relative_l2(logits, eager.predictor.decode(embeddings, too_many)[0]) < 1e-4


@pytest.mark.parametrize("which", ["maskformer", "segformer"])
async def test_the_semantic_model_runs_compiled_and_agrees_with_eager(
        make_settings, tiny_models_dir, tmp_path, which):
    model_dir = str(tiny_models_dir / which)
    eager = SemanticModel(make_settings(runtime="torch", semantic_model=model_dir))
    compiled = SemanticModel(make_settings(runtime="openvino", runtime_cache_dir=tmp_path,
                                           semantic_model=model_dir))
    await eager.ensure_loaded()
    await compiled.ensure_loaded()
    assert compiled.predictor.forward is not None
    # 512 x 512 is the shape compiled at load for both processors' outputs of a square photo.
    square = np.random.default_rng(1).integers(0, 256, (512, 512, 3), dtype=np.uint8)
    ours, reference = compiled.predictor.scores(square), eager.predictor.scores(square)
    assert ours.shape == reference.shape and relative_l2(ours, reference) < 1e-4


async def test_bfloat16_compiles_the_float32_graphs_to_compute_in_bfloat16(make_settings,
                                                                          tmp_path):
    single = SamModel(make_settings(runtime="openvino", runtime_cache_dir=tmp_path))
    half = SamModel(make_settings(runtime="openvino", runtime_cache_dir=tmp_path,
                                  dtype="bfloat16"))
    await single.ensure_loaded()
    await half.ensure_loaded()
    # The weights stay float32 (the exported graph's); the compiled graphs compute in bfloat16,
    # read back from the float32 exports on disk.
    assert half.info().dtype == "bfloat16" and half.predictor.dtype == torch.float32
    assert list(half.predictor.encoder.sources.values()) == ["cached"]
    assert half.predictor.encoder.precision_hint == "bf16"
    ours, reference = half.predictor.embed(photo()), single.predictor.embed(photo())
    for a, b in zip(ours, reference, strict=True):
        assert a.shape == b.shape and relative_l2(a, b) < 5e-2


async def test_bfloat16_eagerly_holds_the_weights_in_bfloat16(make_settings, tiny_models_dir):
    sam = SamModel(make_settings(dtype="bfloat16"))
    semantic = SemanticModel(make_settings(dtype="bfloat16",
                                           semantic_model=str(tiny_models_dir / "segformer")))
    await sam.ensure_loaded()
    await semantic.ensure_loaded()
    assert next(sam.predictor.model.parameters()).dtype == torch.bfloat16
    assert next(semantic.predictor.model.parameters()).dtype == torch.bfloat16
    assert sam.info().dtype == semantic.info().dtype == "bfloat16"
    logits, iou = sam.predictor.decode(sam.predictor.embed(photo()), torch.rand(3, 2))
    assert logits.dtype == iou.dtype == torch.float32 and torch.isfinite(logits).all()
    assert semantic.predictor.class_map(photo()).shape == photo().shape[:2]

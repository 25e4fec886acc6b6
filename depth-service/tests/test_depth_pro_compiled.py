"""DepthPro compiled piece by piece, on the tiny random-weight DepthPro (the real architecture)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from depth_service.backends import load_backend
from depth_service.depth_pro_compiled import (
    CompiledVit,
    Decoder,
    PiecewiseForward,
    _feature_shapes,
    compile_depth_pro,
)
from scene_rpc.accel import Runtime, relative_l2, runtime_version

CPU = torch.device("cpu")

pytestmark = pytest.mark.skipif(runtime_version(Runtime.OPENVINO) is None,
                                reason="openvino is not installed")


def images(count: int, height: int, width: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8) for _ in range(count)]


@pytest.fixture(scope="module")
def backends(tiny_depth_pro, tmp_path_factory):
    eager = load_backend(tiny_depth_pro, CPU, torch.float32)
    compiled = load_backend(tiny_depth_pro, CPU, torch.float32, runtime=Runtime.OPENVINO,
                            cache_dir=tmp_path_factory.mktemp("graphs"))
    return eager, compiled


def test_the_encoders_call_compiled_vits_and_a_batch_matches_eager(backends):
    eager, compiled = backends
    encoder = compiled.model.depth_pro.encoder
    assert isinstance(encoder.patch_encoder.model, CompiledVit)
    assert isinstance(encoder.image_encoder.model, CompiledVit)
    assert isinstance(compiled.model.fov_model.fov_encoder.model, CompiledVit)
    # A batch of three crops: each image runs through the one batch-of-one graph.
    crops = images(3, 70, 50, seed=5)
    ours, reference = compiled.predict(crops), eager.predict(crops)
    for mine, theirs in zip(ours, reference, strict=True):
        assert relative_l2(mine.disparity, theirs.disparity) < 1e-4
        assert mine.fov_deg == pytest.approx(theirs.fov_deg, rel=1e-4)


def test_the_piecewise_forward_is_transformers_forward(tiny_depth_pro):
    # The eager pieces (no runtime) against DepthProForDepthEstimation's own forward: the
    # project's copy of its few lines must not drift from the library's.
    backend = load_backend(tiny_depth_pro, CPU, torch.float32)
    model = backend.model
    pixels = torch.randn(2, 3, *backend.native_hw, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        depth, fov = PiecewiseForward(model, Decoder(model))(pixels)
        reference = model(pixel_values=pixels)
    torch.testing.assert_close(depth, reference.predicted_depth)
    torch.testing.assert_close(fov, reference.field_of_view)


def test_feature_shapes_are_found_without_running_the_model(tiny_depth_pro):
    backend = load_backend(tiny_depth_pro, CPU, torch.float32)
    with torch.inference_mode():
        features = backend.model.depth_pro(
            pixel_values=torch.zeros(1, 3, *backend.native_hw)).features
    assert _feature_shapes(backend.model, *backend.native_hw) == [f.shape for f in features]


def test_a_failed_export_leaves_the_model_eager_and_untouched(tiny_depth_pro, tmp_path):
    # A file where the graph cache should be: the first piece's export fails.
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("")
    backend = load_backend(tiny_depth_pro, CPU, torch.float32)
    vit = backend.model.depth_pro.encoder.patch_encoder.model
    with pytest.raises(OSError):
        compile_depth_pro(backend.model, Runtime.OPENVINO, native_hw=backend.native_hw,
                          cache_dir=blocked, key="k", threads=1)
    assert backend.model.depth_pro.encoder.patch_encoder.model is vit
    auto = load_backend(tiny_depth_pro, CPU, torch.float32, runtime=Runtime.AUTO,
                        cache_dir=blocked)
    assert auto.runtime == "torch"
    [prediction] = auto.predict(images(1, 40, 40))
    assert np.isfinite(prediction.disparity).all()

"""The transformers backends, on tiny random-weight models of the real architectures loaded
through the production ``from_pretrained`` path."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from depth_service.backends import (
    MAX_FOV_DEG,
    DepthProBackend,
    ProcessorBackend,
    focal_length_px,
    load_backend,
)
from scene_rpc.ml.accel import relative_l2, runtime_version
from scene_rpc.settings import Runtime

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def depth_anything(tiny_depth_anything):
    return load_backend(tiny_depth_anything, CPU, torch.float32)


@pytest.fixture(scope="module")
def depth_pro(tiny_depth_pro):
    return load_backend(tiny_depth_pro, CPU, torch.float32)


def images(count: int, height: int, width: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8) for _ in range(count)]


def test_depth_anything_loads_with_its_stock_processor(depth_anything, tiny_depth_anything):
    assert isinstance(depth_anything, ProcessorBackend)
    assert type(depth_anything.processor).__name__ == "DPTImageProcessorPil"  # no torchvision
    assert depth_anything.native_hw == (56, 56)
    assert not depth_anything.metric and not depth_anything.predicts_fov
    assert (depth_anything.model_id, depth_anything.device) == (tiny_depth_anything, "cpu")
    assert depth_anything.dtype == "float32"


def test_depth_anything_predicts_one_relative_map_per_crop(depth_anything):
    predictions = depth_anything.predict(images(3, 60, 90))
    assert len(predictions) == 3
    for prediction in predictions:
        # Keep-aspect resize to the native short side, in multiples of the 14 px patch.
        assert prediction.disparity.shape == (56, 84)
        assert prediction.disparity.dtype == np.float32
        assert prediction.fov_deg is None


def test_batched_and_single_predictions_agree(depth_anything):
    batch = images(2, 56, 56, seed=1)
    together = depth_anything.predict(batch)
    alone = [depth_anything.predict([image])[0] for image in batch]
    for a, b in zip(together, alone, strict=True):
        np.testing.assert_allclose(a.disparity, b.disparity, rtol=1e-4, atol=1e-5)


def test_depth_pro_reads_its_processor_constants_and_predicts_metric_inverse_depth(depth_pro):
    assert isinstance(depth_pro, DepthProBackend)
    assert depth_pro.native_hw == (128, 128)
    assert depth_pro.metric and depth_pro.predicts_fov
    [prediction] = depth_pro.predict(images(1, 90, 120))
    assert prediction.disparity.ndim == 2 and prediction.disparity.dtype == np.float32
    assert 0 < prediction.fov_deg < 180
    assert (prediction.disparity > 0).all()


def test_depth_pro_matches_the_reference_preprocessing_and_metric_conversion(depth_pro):
    """Apple's reference: normalise with mean/std 0.5, bilinear resize to 1536 (here 128) without
    antialiasing, then inverse depth = canonical * width / f_px with f_px from the fov."""
    image = images(1, 70, 100, seed=2)[0]
    pixels = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255.0
    pixels = torch.nn.functional.interpolate((pixels - 0.5) / 0.5, size=(128, 128),
                                             mode="bilinear", align_corners=False)
    with torch.no_grad():
        output = depth_pro.model(pixel_values=pixels)
    fov = float(output.field_of_view[0])
    f_px = focal_length_px(fov, 100)
    expected = output.predicted_depth[0].numpy() * 100 / f_px
    [prediction] = depth_pro.predict([image])
    assert prediction.fov_deg == pytest.approx(fov, rel=1e-5)
    expected = np.clip(expected, 1e-4, 1e4)
    np.testing.assert_allclose(prediction.disparity, expected, atol=1e-4 * expected.max())


def test_focal_length_from_field_of_view():
    assert focal_length_px(90.0, 1000) == pytest.approx(500.0)
    assert focal_length_px(60.0, 640) == pytest.approx(320 / math.tan(math.radians(30)))


def test_a_degenerate_field_of_view_is_clamped(depth_pro):
    head = depth_pro.model.fov_model.head.layers[-1]
    original = head.bias.detach().clone()
    try:
        with torch.no_grad():
            head.bias.fill_(1000.0)
        [prediction] = depth_pro.predict(images(1, 64, 64))
        assert prediction.fov_deg == MAX_FOV_DEG
    finally:
        with torch.no_grad():
            head.bias.copy_(original)


def test_an_unsupported_architecture_is_refused_with_the_reason(tmp_path: Path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "glpn"}))
    with pytest.raises(ValueError, match="'glpn' model; supported: depth_anything"):
        load_backend(str(tmp_path), CPU, torch.float32)


def test_a_missing_model_fails_to_load(tmp_path: Path):
    with pytest.raises(OSError):
        load_backend(str(tmp_path / "nowhere"), CPU, torch.float32)


@pytest.fixture(scope="module")
def exported_graphs(tiny_depth_anything, tmp_path_factory) -> Path:
    """A graph cache the tiny Depth Anything's square and buckets were exported to once, for the
    tests about what runs after the first start (exporting 13 graphs takes ~12 s each time)."""
    cache = tmp_path_factory.mktemp("exported-graphs")
    if runtime_version(Runtime.OPENVINO) is not None:
        load_backend(tiny_depth_anything, CPU, torch.float32, runtime=Runtime.OPENVINO,
                     cache_dir=cache)
    return cache


def _exported(cache_dir: Path) -> set[str]:
    """The shapes with a finished graph in ``cache_dir``."""
    return {p.parent.name for p in cache_dir.glob("*/*/*/done")}


@pytest.mark.skipif(runtime_version(Runtime.OPENVINO) is None, reason="openvino is not installed")
def test_a_compiled_runtime_exports_at_load_reuses_its_cache_and_matches_eager(
        tiny_depth_anything, tmp_path):
    eager = load_backend(tiny_depth_anything, CPU, torch.float32)
    compiled = load_backend(tiny_depth_anything, CPU, torch.float32, runtime=Runtime.OPENVINO,
                            cache_dir=tmp_path)
    assert compiled.runtime.startswith("openvino") and eager.runtime == "torch"
    # The native square and every bucket were exported inside the load.
    exported = _exported(tmp_path)
    assert len(exported) == len({compiled.native_hw, *compiled.bucket_shapes()})

    # 60 x 80: a 4:3 photo on its bucket (the processor's own shape for it, compiled on first
    # use, from the disk), then the native square: both as eager computes them.
    for crops in (images(1, 60, 80), images(1, *compiled.native_hw, seed=3)):
        [ours] = compiled.predict(crops)
        [reference] = eager.predict(crops)
        assert ours.disparity.shape == reference.disparity.shape
        assert relative_l2(ours.disparity, reference.disparity) < 1e-4
    assert set(compiled._forward.sources.values()) == {"cached"}
    assert _exported(tmp_path) == exported

    # The next start reads the graphs back instead of exporting them again.
    again = load_backend(tiny_depth_anything, CPU, torch.float32, runtime=Runtime.OPENVINO,
                         cache_dir=tmp_path)
    assert set(again._forward.sources.values()) == {"cached"}
    assert _exported(tmp_path) == exported


@pytest.mark.skipif(runtime_version(Runtime.OPENVINO) is None, reason="openvino is not installed")
def test_every_usual_aspect_ratio_runs_on_a_bucket_exported_before_the_first_request(
        tiny_depth_anything, exported_graphs):
    backend = load_backend(tiny_depth_anything, CPU, torch.float32, runtime=Runtime.OPENVINO,
                           cache_dir=exported_graphs)
    assert backend.bucketed and set(backend._forward.sources.values()) == {"cached"}
    exported = _exported(exported_graphs)
    # Any usual aspect ratio, larger or smaller than the native input, lands on one of them
    # without an export.
    for height, width in ((60, 90), (90, 60), (200, 210), (300, 170), (20, 20), (30, 45)):
        assert backend.bucket_shape(height, width) in backend.bucket_shapes()
        [prediction] = backend.predict(images(1, height, width))
        assert prediction.disparity.shape[0] > 0 and np.isfinite(prediction.disparity).all()
    assert _exported(exported_graphs) == exported
    # A banner keeps its own aspect ratio (no bucket is near it): its graph comes later.
    assert backend.bucket_shape(30, 100) is None
    [banner] = backend.predict(images(1, 30, 100))
    assert np.isfinite(banner.disparity).all()


def test_buckets_keep_the_processors_choice_of_scale(tiny_depth_anything):
    backend = load_backend(tiny_depth_anything, CPU, torch.float32)
    native = min(backend.native_hw)
    # Larger than native: the short side goes to native; smaller: the long side does.
    assert min(backend.bucket_shape(600, 800)) == native
    assert max(backend.bucket_shape(30, 40)) == native
    # An exact bucket ratio gets the processor's own shape.
    for height, width in ((600, 800), (800, 1200), (900, 1600), (40, 30)):
        assert backend.bucket_shape(height, width) == tuple(
            backend.processor(images=[np.zeros((height, width, 3), np.uint8)],
                              return_tensors="pt")["pixel_values"].shape[-2:])


@pytest.mark.parametrize("runtime", [Runtime.AUTO, Runtime.OPENVINO])
def test_depth_pro_always_runs_eagerly(runtime, tiny_depth_pro, tmp_path):
    if runtime is Runtime.OPENVINO and runtime_version(Runtime.OPENVINO) is None:
        pytest.skip("openvino is not installed")
    depth_pro = load_backend(tiny_depth_pro, CPU, torch.float32, runtime=runtime,
                             cache_dir=tmp_path)
    assert depth_pro.runtime == "torch"
    # Nothing was exported for it.
    assert not any(tmp_path.iterdir())


@pytest.mark.skipif(runtime_version(Runtime.OPENVINO) is None, reason="openvino is not installed")
def test_auto_compiles_on_a_cpu(tiny_depth_anything, exported_graphs):
    backend = load_backend(tiny_depth_anything, CPU, torch.float32, runtime=Runtime.AUTO,
                           cache_dir=exported_graphs)
    assert backend.runtime == f"openvino {runtime_version(Runtime.OPENVINO)}"


@pytest.mark.skipif(runtime_version(Runtime.OPENVINO) is None, reason="openvino is not installed")
def test_a_failed_export_leaves_auto_on_eager_pytorch_and_fails_an_explicit_runtime(
        tiny_depth_anything, tmp_path):
    # A file where the graph cache should be: every export fails to write its graph.
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("")
    backend = load_backend(tiny_depth_anything, CPU, torch.float32, runtime=Runtime.AUTO,
                           cache_dir=blocked)
    assert backend.runtime == "torch"
    [prediction] = backend.predict(images(1, 64, 64))
    assert np.isfinite(prediction.disparity).all()
    with pytest.raises(OSError):
        load_backend(tiny_depth_anything, CPU, torch.float32, runtime=Runtime.OPENVINO,
                     cache_dir=blocked)


def test_bfloat16_eagerly_holds_the_weights_in_bfloat16(tiny_depth_anything, tiny_depth_pro):
    for model_dir in (tiny_depth_anything, tiny_depth_pro):
        reference = load_backend(model_dir, CPU, torch.float32)
        backend = load_backend(model_dir, CPU, torch.bfloat16)
        assert backend.model.dtype == torch.bfloat16 and backend.dtype == "bfloat16"
        crops = images(1, 60, 90)
        [ours], [expected] = backend.predict(crops), reference.predict(crops)
        assert ours.disparity.dtype == np.float32
        assert relative_l2(ours.disparity, expected.disparity) < 5e-2


@pytest.mark.skipif(runtime_version(Runtime.OPENVINO) is None, reason="openvino is not installed")
def test_a_compiled_bfloat16_backend_exports_float32_weights_and_computes_in_bfloat16(
        tiny_depth_anything, exported_graphs):
    single = load_backend(tiny_depth_anything, CPU, torch.float32, runtime=Runtime.OPENVINO,
                          cache_dir=exported_graphs)
    half = load_backend(tiny_depth_anything, CPU, torch.bfloat16, runtime=Runtime.OPENVINO,
                        cache_dir=exported_graphs)
    # The same float32 graph on disk, compiled to compute in bfloat16.
    assert set(half._forward.sources.values()) == {"cached"}
    assert half.model.dtype == torch.float32 and half.dtype == "bfloat16"
    crops = images(1, *half.native_hw, seed=5)
    [ours], [expected] = half.predict(crops), single.predict(crops)
    assert relative_l2(ours.disparity, expected.disparity) < 5e-2

"""Real pretrained weights on real photos; skipped (with the reason) unless the weights are in the
local Hugging Face cache. Tiny random-weight models cannot say anything about depth quality."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from scipy.stats import spearmanr

from depth_service.model import DepthModel
from depth_service.pipeline import EstimateOptions
from depth_service.settings import TileMode
from scene_rpc.profiles import PROFILES
from tests.plugin import skip_unless_cached

# Every profile's depth model and fallback (scene_rpc.profiles), each skipped unless cached.
REAL_MODELS = [
    pytest.param(model_id, marks=skip_unless_cached(model_id))
    for model_id in dict.fromkeys(
        m for p in PROFILES.values() for m in (p.depth_model, p.depth_fallback_model) if m)
]


async def estimate(model: DepthModel, image: np.ndarray, **options):
    events = [event async for event in model.estimate(image, EstimateOptions(**options))]
    return events[-1]


@pytest.mark.real_models
@pytest.mark.slow
@pytest.mark.parametrize("model_id", REAL_MODELS)
async def test_real_model_orders_depth_and_tiling_keeps_the_layout(model_id, shared_images,
                                                                   settings_factory):
    model = DepthModel(settings_factory(model=model_id, threads=0))
    try:
        photo = np.asarray(Image.open(shared_images["outdoor_colosseum_sky"]).convert("RGB"))
        height = photo.shape[0]
        single = await estimate(model, photo, tile_mode=TileMode.OFF)
        # The sky fills the top of the frame, the ground the bottom: the ground is nearer.
        sky = single.normalized[: height // 8].mean()
        ground = single.normalized[-height // 8 :].mean()
        assert ground > sky + 0.2, (ground, sky)
        if single.depth_m is not None:
            sky_m, ground_m = single.depth_m[: height // 8], single.depth_m[-height // 8 :]
            assert np.median(ground_m) < np.median(sky_m)

        for name in ("outdoor_colosseum_sky", "indoor_room"):
            photo = np.asarray(Image.open(shared_images[name]).convert("RGB"))
            tile = min(photo.shape[:2]) // 2
            single = await estimate(model, photo, tile_mode=TileMode.OFF)
            tiled = await estimate(model, photo, tile_mode=TileMode.FORCED, tile_size=tile)
            assert tiled.tile_count >= 4
            rho = spearmanr(single.normalized[::4, ::4].ravel(),
                            tiled.normalized[::4, ::4].ravel()).statistic
            assert rho >= 0.9, (name, rho)
    finally:
        model.close()


# The Depth Anything models of the profiles: the ones a compiled runtime serves on shape buckets.
BUCKETED_MODELS = [
    pytest.param(model_id, marks=skip_unless_cached(model_id))
    for model_id in dict.fromkeys(
        m for p in PROFILES.values() for m in (p.depth_model, p.depth_fallback_model)
        if m and "Depth-Anything" in m)
]


@pytest.mark.real_models
@pytest.mark.slow
@pytest.mark.parametrize("model_id", BUCKETED_MODELS)
def test_buckets_and_bfloat16_keep_the_trained_models_depth(model_id, shared_images, tmp_path):
    """What random weights cannot say (a one-patch change of the input moves a random model's
    depth by most of its value): with the trained weights, the global pass on its shape bucket
    (compiled) against the eager pass at the processor's own shape, and bfloat16 against float32
    on the same bucket, within the bounds of ``scripts/bench_precision.py``."""
    import torch

    from depth_service.backends import load_backend
    from depth_service.pipeline import resize_map
    from scene_dev.bench_precision import DEPTH_MEDIAN_BOUND, DEPTH_P99_BOUND, depth_differences
    from scene_rpc.settings import Runtime

    cpu = torch.device("cpu")
    eager = load_backend(model_id, cpu, torch.float32)
    single = load_backend(model_id, cpu, torch.float32, runtime=Runtime.OPENVINO,
                          cache_dir=tmp_path)
    half = load_backend(model_id, cpu, torch.bfloat16, runtime=Runtime.OPENVINO,
                        cache_dir=tmp_path)
    for name in ("outdoor_colosseum_sky", "indoor_room", "animal_cat_chelsea"):
        photo = np.asarray(Image.open(shared_images[name]).convert("RGB"))
        size = photo.shape[:2]
        natural, bucket, bucket_half = (
            resize_map(backend.predict([photo])[0].disparity, size)
            for backend in (eager, single, half))
        # The bucket's stretch (at most 6 %) keeps the layout of the depth.
        rho = spearmanr(natural[::4, ::4].ravel(), bucket[::4, ::4].ravel()).statistic
        assert rho >= 0.98, (name, rho)
        median, p99 = depth_differences(bucket_half, bucket)
        print(f"\n{model_id} {name}: bucket rho {rho:.4f}; bfloat16 median {median:.4f} "
              f"p99 {p99:.4f}")
        assert median <= DEPTH_MEDIAN_BOUND and p99 <= DEPTH_P99_BOUND, (name, median, p99)

"""DepthModel: primary/fallback loading, Info, the single inference thread, out-of-memory
batches. (Lazy loading and failure recovery through gRPC are in test_server.py.)"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from depth_service.backends import load_backend
from depth_service.model import AUTO_BATCH_OTHER, DepthModel
from depth_service.pipeline import DepthEstimate, EstimateOptions
from depth_service.settings import TileMode
from scene_rpc.errors import ModelUnavailable
from scene_rpc.ml.accel import runtime_version
from scene_rpc.settings import Runtime


async def estimate(model: DepthModel, image: np.ndarray, **options) -> DepthEstimate:
    events = [event async for event in model.estimate(image, EstimateOptions(**options))]
    return events[-1]


async def test_the_fallback_loads_when_the_primary_cannot_and_info_says_so(
        settings_factory, tiny_depth_anything, tmp_path):
    missing = str(tmp_path / "no-such-model")
    model = DepthModel(settings_factory(model=missing, fallback_model=tiny_depth_anything))
    result = await model.load()
    assert result.fallback and result.model_id == tiny_depth_anything
    info = model.info()
    assert info.role == "depth" and info.loaded and info.fallback
    assert info.requested_model_id == missing and info.model_id == tiny_depth_anything
    assert info.device == "cpu" and info.dtype == "float32" and info.load_time_s > 0
    assert "no-such-model" in info.last_error and "failed to load" in info.last_error
    model.close()


async def test_when_both_models_fail_the_error_names_both(settings_factory, tmp_path):
    model = DepthModel(settings_factory(model=str(tmp_path / "first"),
                                        fallback_model=str(tmp_path / "second")))
    with pytest.raises(ModelUnavailable, match=r"first.*failed.*second"):
        await model.load()
    info = model.info()
    assert not info.loaded and "second" in info.last_error
    model.close()


async def test_info_before_loading(settings_factory):
    model = DepthModel(settings_factory(model="some/model"))
    info = model.info()
    assert (info.loaded, info.loading, info.model_id, info.last_error) == (False, False, "", "")
    assert info.requested_model_id == "some/model"
    model.close()


async def test_forward_passes_never_overlap_even_across_requests(settings_factory, fakes):
    backend = fakes.DepthBackend(native=32, delay_s=0.01)
    model = DepthModel(settings_factory(), loader=lambda *_: backend)
    image = fakes.smooth_field(80, 120)
    await asyncio.gather(*(estimate(model, image, tile_mode=TileMode.FORCED, tile_size=32)
                           for _ in range(4)))
    assert backend.max_active == 1
    assert len(backend.calls) > 4
    model.close()


async def test_an_out_of_memory_batch_is_split_and_later_batches_stay_smaller(
        settings_factory, fakes):
    backend = fakes.OutOfMemoryBackend(max_batch=2, native=32)
    model = DepthModel(settings_factory(batch_size=8), loader=lambda *_: backend)
    result = await estimate(model, fakes.smooth_field(100, 150), tile_mode=TileMode.FORCED,
                            tile_size=32)
    assert result.tile_count > 8
    assert max(backend.calls) <= 2 and sum(backend.calls) == 1 + result.tile_count
    assert model.batch_size == 2
    model.close()


async def test_auto_batch_size_on_cpu(settings_factory, tiny_depth_anything):
    model = DepthModel(settings_factory(model=tiny_depth_anything))
    await model.load()
    assert model.batch_size == AUTO_BATCH_OTHER
    model.close()


async def test_real_tiny_models_end_to_end_with_tiles(settings_factory, tiny_depth_pro, fakes):
    model = DepthModel(settings_factory(model=tiny_depth_pro), loader=load_backend)
    result = await estimate(model, fakes.smooth_field(150, 200), tile_mode=TileMode.FORCED,
                            tile_size=64)
    assert result.tile_count > 1 and result.normalized.shape == (150, 200)
    assert result.depth_m is not None and result.depth_m.shape == (150, 200)
    assert result.focal_length_px is not None and result.focal_length_px > 0
    model.close()


@pytest.mark.skipif(runtime_version(Runtime.OPENVINO) is None, reason="openvino is not installed")
async def test_the_compiled_runtime_is_built_in_load_and_reported_by_info(
        settings_factory, tiny_depth_anything, fakes, tmp_path):
    settings = settings_factory(model=tiny_depth_anything, runtime="openvino",
                                runtime_cache_dir=tmp_path)
    model = DepthModel(settings)
    await model.load()
    assert model.info().device == f"cpu (openvino {runtime_version(Runtime.OPENVINO)})"
    assert any(tmp_path.rglob("model.xml"))  # the graph is on disk for the next start
    result = await estimate(model, fakes.smooth_field(90, 120), tile_mode=TileMode.FORCED)
    assert result.tile_count > 1 and result.normalized.shape == (90, 120)
    model.close()

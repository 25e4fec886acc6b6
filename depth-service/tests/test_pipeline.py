from __future__ import annotations

import math

import numpy as np
import pytest

from depth_service import tiling
from depth_service.panorama import PanoramaMode
from depth_service.pipeline import (
    DepthEstimate,
    DepthPipeline,
    EstimateOptions,
    resize_map,
)
from depth_service.settings import TileMode
from scene_rpc.errors import InvalidInput
from scene_rpc.progress import Progress


def pipeline_for(backend, *, batch_size: int = 4, max_tiles: int = 64) -> DepthPipeline:
    async def forward(images):
        return backend.predict(images)

    return DepthPipeline(backend, forward, batch_size=batch_size, max_tiles=max_tiles)


async def run(pipeline: DepthPipeline, image: np.ndarray, **options):
    events = [event async for event in pipeline.run(image, EstimateOptions(**options))]
    assert isinstance(events[-1], DepthEstimate)
    assert all(isinstance(event, Progress) for event in events[:-1])
    return events[:-1], events[-1]


def truth_of(image: np.ndarray) -> np.ndarray:
    return image.astype(np.float64).mean(axis=2) / 255.0 + 1.0


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def affine_residual(output: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """What is left of ``output`` after the best global affine map of the truth."""
    design = np.stack([truth.ravel(), np.ones(truth.size)], axis=1)
    coefficients, *_ = np.linalg.lstsq(design, output.ravel(), rcond=None)
    return output - (design @ coefficients).reshape(output.shape)


async def test_tiles_distorted_by_random_scale_and_shift_blend_into_the_truth(fakes):
    image = fakes.smooth_field(160, 240, seed=3)
    backend = fakes.DepthBackend(native=32, seed=7, metric=True)
    _, estimate = await run(pipeline_for(backend), image, tile_mode=TileMode.FORCED,
                            tile_size=48, tile_overlap=0.25)
    assert estimate.tile_count > 20
    disparity = 1.0 / estimate.depth_m  # the fake is "metric", so this is the blended disparity
    truth = truth_of(image)

    assert pearson(disparity, truth) >= 0.999
    residual = affine_residual(disparity, truth)
    spread = np.ptp(disparity)
    # No seams: nowhere does the error step between neighbouring pixels, borders included.
    assert np.abs(np.diff(residual, axis=0)).max() < 0.01 * spread
    assert np.abs(np.diff(residual, axis=1)).max() < 0.01 * spread


async def test_the_same_tiles_without_alignment_would_fail_that_test(fakes):
    image = fakes.smooth_field(160, 240, seed=3)
    backend = fakes.DepthBackend(native=32, seed=7)
    grid = tiling.plan_grid(160, 240, 48, 0.25)
    raw = [resize_map(backend.predict([tiling.crop(image, tile)])[0].disparity, tile.shape)
           for tile in grid.tiles]
    assert pearson(tiling.blend(grid, raw), truth_of(image)) < 0.99


async def test_tiles_beat_the_global_pass_on_detail(fakes):
    image = fakes.smooth_field(256, 256, seed=4)
    rng = np.random.default_rng(0)
    image = np.clip(image.astype(int) + rng.integers(-40, 40, size=(256, 256, 1)), 0, 255)
    image = image.astype(np.uint8)  # fine texture the 32 px global pass cannot resolve
    backend = fakes.DepthBackend(native=32, metric=True)
    pipeline = pipeline_for(backend, max_tiles=256)  # tiles of exactly the native size
    _, single = await run(pipeline, image, tile_mode=TileMode.OFF)
    _, tiled = await run(pipeline, image, tile_mode=TileMode.FORCED, tile_size=32)
    truth = truth_of(image)
    assert pearson(1 / tiled.depth_m, truth) >= 0.999
    assert pearson(1 / single.depth_m, truth) < 0.97


def seam_ratio(values: np.ndarray) -> float:
    """Mean step across the left/right seam over the mean step between neighbouring columns."""
    return float(np.abs(values[:, 0] - values[:, -1]).mean()
                 / np.abs(np.diff(values, axis=1)).mean())


async def test_panorama_tiles_wrap_so_the_left_and_right_edges_meet(fakes):
    image = fakes.smooth_field(96, 192, periodic=True, seed=5)
    truth = truth_of(image)
    pipeline = pipeline_for(fakes.DepthBackend(native=32, seed=11, metric=True))
    _, estimate = await run(pipeline, image, panorama=True, tile_mode=TileMode.FORCED,
                            tile_size=48, panorama_mode=PanoramaMode.EQUIRECT)
    disparity = 1.0 / estimate.depth_m
    assert pearson(disparity, truth) >= 0.999
    # The seam is no worse than an ordinary pair of neighbouring columns (as in the truth).
    assert seam_ratio(disparity) <= 1.2 * seam_ratio(truth) + 0.05
    assert estimate.focal_length_px is None and estimate.horizontal_fov_deg is None

    _, flat = await run(pipeline, image, panorama=False, tile_mode=TileMode.FORCED,
                        tile_size=48)
    assert seam_ratio(1.0 / flat.depth_m) > 1.5 * seam_ratio(truth), "the check has teeth"


async def test_progress_counts_the_global_pass_then_each_batch_of_tiles(fakes):
    backend = fakes.DepthBackend(native=32)
    events, estimate = await run(pipeline_for(backend, batch_size=3), fakes.smooth_field(100, 150),
                                 tile_mode=TileMode.FORCED, tile_size=32)
    tiles = estimate.tile_count
    assert events[0] == Progress("global_pass", 1, 1, pytest.approx(1 / (1 + tiles)))
    assert [event.stage for event in events[1:]] == ["tiles"] * math.ceil(tiles / 3)
    assert events[-1].done == events[-1].total == tiles and events[-1].fraction == 1.0
    fractions = [event.fraction for event in events]
    assert fractions == sorted(fractions)
    assert backend.calls == [1] + [3] * (tiles // 3) + ([tiles % 3] if tiles % 3 else [])
    assert set(estimate.timing_ms) >= {"global_pass", "tiles", "blend", "normalize"}


@pytest.mark.parametrize(
    "height,width,mode,tile_size,tiled",
    [
        (100, 150, TileMode.OFF, 32, False),
        (100, 150, TileMode.AUTO, 0, True),  # 150 > 1.25 x native 32
        (36, 38, TileMode.AUTO, 0, False),  # barely above native: not worth tiles
        (100, 150, TileMode.AUTO, 160, False),
        (100, 150, TileMode.FORCED, 160, False),  # one tile would repeat the global pass
        (100, 150, TileMode.FORCED, 100, True),
    ],
)
def test_when_to_tile(fakes, height, width, mode, tile_size, tiled):
    grid = pipeline_for(fakes.DepthBackend(native=32)).plan(
        height, width, EstimateOptions(tile_mode=mode, tile_size=tile_size))
    assert (grid is not None) == tiled


async def test_output_is_full_resolution_normalized_and_relative_models_give_no_metric(fakes):
    image = fakes.smooth_field(77, 131)  # odd sizes
    _, estimate = await run(pipeline_for(fakes.DepthBackend(native=32)), image,
                            tile_mode=TileMode.AUTO)
    assert estimate.normalized.shape == (77, 131) and estimate.normalized.dtype == np.float32
    assert estimate.normalized.min() == 0.0 and estimate.normalized.max() == 1.0
    assert estimate.depth_m is None and estimate.focal_length_px is None
    # 1 = near: the brightest (highest disparity) pixels of the fake are the nearest.
    truth = truth_of(image)
    assert estimate.normalized[truth == truth.max()].mean() == 1.0


async def test_metric_models_give_depth_in_metres_and_focal_length_from_the_global_fov(fakes):
    backend = fakes.DepthBackend(native=32, metric=True, distort=False, fov_deg=60.0)
    image = fakes.smooth_field(60, 80)
    _, estimate = await run(pipeline_for(backend), image, tile_mode=TileMode.OFF)
    assert estimate.horizontal_fov_deg == 60.0
    assert estimate.focal_length_px == pytest.approx(0.5 * 80 / math.tan(math.radians(30)))
    assert estimate.depth_m.shape == (60, 80) and estimate.depth_m.dtype == np.float32
    np.testing.assert_allclose(estimate.depth_m, 1 / truth_of(image), rtol=0.1)


async def test_an_input_cap_downscales_before_inference_and_resizes_the_depth_back(fakes):
    backend = fakes.DepthBackend(native=32, seed=5, metric=True, fov_deg=60.0)
    pipeline = pipeline_for(backend)
    image = fakes.smooth_field(200, 300, seed=4)
    options = {"tile_mode": TileMode.FORCED, "tile_size": 48, "tile_overlap": 0.25}
    _, estimate = await run(pipeline, image, max_input_side=100, **options)

    # The model saw the 67 x 100 image (global pass) and 48 px tiles planned on it, nothing more.
    assert backend.input_shapes[0] == (67, 100)
    assert all(max(shape) <= 100 for shape in backend.input_shapes)
    assert estimate.tile_count == len(pipeline.plan(67, 100, EstimateOptions(**options)))
    assert estimate.tile_count < len(pipeline.plan(200, 300, EstimateOptions(**options)))
    # Outputs at the input's size, still the truth up to an affine map, and the focal length in
    # the input's pixels (the field of view does not change with the scale).
    assert estimate.normalized.shape == estimate.depth_m.shape == (200, 300)
    assert pearson(1.0 / estimate.depth_m, truth_of(image)) >= 0.99
    assert estimate.focal_length_px == pytest.approx(0.5 * 300 / math.tan(math.radians(30)))
    assert {"downscale", "upscale"} <= set(estimate.timing_ms)


async def test_an_image_within_the_cap_is_not_resampled(fakes):
    backend = fakes.DepthBackend(native=32)
    _, estimate = await run(pipeline_for(backend), fakes.smooth_field(60, 80),
                            tile_mode=TileMode.OFF, max_input_side=80)
    assert backend.input_shapes == [(60, 80)]
    assert "downscale" not in estimate.timing_ms and estimate.normalized.shape == (60, 80)


@pytest.mark.parametrize("options,message", [
    ({"max_input_side": -1}, "max input side"),
    ({"max_input_side": 8}, "max input side"),
    ({"tile_size": 5}, "tile size"),
    ({"tile_size": -1}, "tile size"),
    ({"tile_overlap": 0.8}, "overlap"),
    ({"tile_overlap": -0.1}, "overlap"),
])
def test_bad_tiling_options_are_invalid_input(options, message):
    with pytest.raises(InvalidInput, match=message):
        EstimateOptions(**options)

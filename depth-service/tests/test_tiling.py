from __future__ import annotations

import itertools

import numpy as np
import pytest

from depth_service import tiling


def coverage(spans, length: int, *, wrap: bool = False) -> np.ndarray:
    covered = np.zeros(length, dtype=int)
    for span in spans:
        index = np.arange(span.start, span.start + span.length)
        if wrap:
            index %= length
        assert index.max() < length
        covered[index] += 1
    return covered


@pytest.mark.parametrize("length", [100, 101, 257, 518, 1000, 4000])
@pytest.mark.parametrize("tile,overlap", [(64, 16), (100, 25), (518, 130)])
def test_spans_cover_the_axis_with_at_least_the_requested_overlap(length, tile, overlap):
    spans = tiling.axis_spans(length, tile, overlap)
    assert (coverage(spans, length) >= 1).all()
    assert spans[0].start == 0 and spans[-1].start + spans[-1].length == length
    assert spans[0].overlap_before == 0 and spans[-1].overlap_after == 0
    for previous, following in itertools.pairwise(spans):
        shared = previous.start + previous.length - following.start
        assert shared >= min(overlap, length - tile)
        assert previous.overlap_after == following.overlap_before == shared


def test_an_axis_no_longer_than_a_tile_is_one_span():
    assert tiling.axis_spans(50, 64, 16) == (tiling.Span(0, 50),)


@pytest.mark.parametrize("length,tile,overlap", [(200, 64, 16), (1024, 512, 128), (999, 100, 50)])
def test_wrapped_spans_go_round_the_circle(length, tile, overlap):
    spans = tiling.axis_spans(length, tile, overlap, wrap=True)
    assert (coverage(spans, length, wrap=True) >= 1).all()
    assert spans[-1].start + spans[-1].length > length, "the last tile continues across the seam"
    assert spans[0].overlap_before == spans[-1].overlap_after >= overlap
    for previous, following in itertools.pairwise(spans):
        assert previous.overlap_after == following.overlap_before >= overlap


@pytest.mark.parametrize("wrap", [False, True])
def test_weights_of_neighbours_sum_to_one_over_the_overlap(wrap):
    length = 300
    spans = tiling.axis_spans(length, 80, 20, wrap=wrap)
    total = np.zeros(length)
    for span in spans:
        index = np.arange(span.start, span.start + span.length) % length
        total[index] += span.weights()
    np.testing.assert_allclose(total, 1.0, atol=1e-12)
    assert all((span.weights() > 0).all() for span in spans)


def test_plan_grid_grows_tiles_to_respect_the_maximum_count():
    grid = tiling.plan_grid(2000, 3000, 100, 0.25, max_tiles=20)
    assert 1 < len(grid) <= 20
    assert grid.tiles[0].shape[0] > 100


def test_plan_grid_keeps_panorama_tiles_narrower_than_half_the_width():
    grid = tiling.plan_grid(512, 1024, 2048, 0.25, wrap=True)
    assert len(grid.cols) >= 3 and all(span.length <= 512 for span in grid.cols)


def test_plan_grid_rejects_overlap_outside_its_range():
    with pytest.raises(ValueError, match="overlap"):
        tiling.plan_grid(100, 100, 32, 0.75)


def test_crop_wraps_columns_past_the_right_edge():
    image = np.arange(6 * 10).reshape(6, 10)
    tile = tiling.Tile(tiling.Span(1, 3), tiling.Span(8, 4))
    np.testing.assert_array_equal(tiling.crop(image, tile, wrap=True), image[1:4, [8, 9, 0, 1]])
    with pytest.raises(ValueError, match="wrap"):
        tiling.crop(image, tile, wrap=False)


@pytest.mark.parametrize("wrap", [False, True])
def test_blending_identical_tiles_reproduces_the_map(wrap):
    rng = np.random.default_rng(0)
    truth = rng.normal(size=(90, 160)).astype(np.float32)
    grid = tiling.plan_grid(90, 160, 40, 0.3, wrap=wrap)
    blended = tiling.blend(grid, [tiling.crop(truth, tile, wrap=wrap) for tile in grid.tiles])
    np.testing.assert_allclose(blended, truth, atol=1e-5)


def test_fit_recovers_scale_and_shift_despite_outliers():
    rng = np.random.default_rng(1)
    target = rng.uniform(1.0, 5.0, size=(64, 64))
    source = (target - 0.7) / 2.5 + rng.normal(scale=1e-3, size=target.shape)
    corrupted = source.copy()
    corrupted[rng.random(source.shape) < 0.15] = 50.0  # 15% gross outliers
    scale, shift = tiling.fit_scale_shift(corrupted, target)
    assert scale == pytest.approx(2.5, rel=1e-2)
    assert shift == pytest.approx(0.7, abs=2e-2)


def test_fit_is_refused_for_a_flat_tile_or_an_inverted_one():
    target = np.linspace(0, 1, 400).reshape(20, 20)
    assert tiling.fit_scale_shift(np.full((20, 20), 3.0), target) is None
    assert tiling.fit_scale_shift(-target, target) is None


def test_fit_pools_before_fitting_so_fine_detail_does_not_bias_the_scale():
    rng = np.random.default_rng(2)
    coarse = np.kron(rng.uniform(0, 1, size=(16, 16)), np.ones((8, 8)))
    detail = rng.normal(scale=0.5, size=coarse.shape)
    # The tile sees detail the (coarse) global pass does not; block means remove it.
    scale, _ = tiling.fit_scale_shift(2.0 * (coarse + detail), coarse, pool=8)
    assert scale == pytest.approx(0.5, rel=0.05)
    unpooled, _ = tiling.fit_scale_shift(2.0 * (coarse + detail), coarse, pool=1)
    assert unpooled < 0.3


def test_pad_wrap_takes_columns_from_the_opposite_edge():
    image = np.arange(2 * 8).reshape(2, 8)
    padded = tiling.pad_wrap(image, 2)
    np.testing.assert_array_equal(padded[:, :2], image[:, -2:])
    np.testing.assert_array_equal(padded[:, -2:], image[:, :2])
    assert tiling.pad_wrap(image, 0) is image

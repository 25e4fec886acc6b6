"""The panorama's torch path (``panorama_torch``, used on a GPU) against the numpy path, run on
the CPU device: the same views and the same merged map within 1e-4."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from depth_service import panorama, panorama_torch
from depth_service.panorama import ViewLayout
from scene_dev.panorama_oracle import render_panorama

CPU = torch.device("cpu")


@pytest.mark.parametrize("layout", list(ViewLayout))
def test_the_views_are_the_numpy_views(layout):
    image, truth = render_panorama(128, 256)
    views = panorama.views_for(layout, 48, 256)
    ours = panorama_torch.render_views(image, views, CPU)
    for view, crop in zip(views, ours, strict=True):
        expected = panorama.render_view(image, view)
        assert crop.dtype == expected.dtype == np.uint8 and crop.shape == expected.shape
        # Rounding to uint8 may tip a value that sits on .5 one way or the other.
        assert np.abs(crop.astype(int) - expected).max() <= 1
        assert np.mean(crop != expected) < 1e-3
    # Float input, no rounding: the samples themselves.
    distances = truth.astype(np.float32)
    for view, crop in zip(views, panorama_torch.render_views(distances, views, CPU), strict=True):
        np.testing.assert_allclose(crop, panorama.render_view(distances, view), rtol=1e-4,
                                   atol=1e-4 * float(distances.max()))


@pytest.mark.parametrize(("layout", "size"), [(ViewLayout.CUBE, (128, 256)),
                                              (ViewLayout.ICOSAHEDRON, (96, 200))])
def test_the_merge_is_the_numpy_merge(layout, size):
    height, width = size
    views = panorama.views_for(layout, 32, width)
    rng = np.random.default_rng(0)
    # Smooth disparities with per-view scale and shift, as a relative model gives them.
    disparities = [(rng.uniform(0.5, 2.0) * (1.0 + np.outer(np.hanning(24), np.hanning(24)))
                    + rng.uniform(0, 0.3)).astype(np.float32) for _ in views]
    expected = panorama.merge_to_equirect(views, disparities, height, width)
    ours = panorama_torch.merge_to_equirect(views, disparities, height, width, CPU)
    assert ours.dtype == np.float32 and ours.shape == expected.shape
    np.testing.assert_allclose(ours, expected, rtol=1e-4, atol=1e-6)


def test_the_median_floor_is_numpys_median():
    for values in (torch.tensor([3.0, 1.0, 2.0, 10.0]), torch.tensor([5.0, 1.0, 2.0])):
        assert float(panorama_torch._median(values)) == float(np.median(values.numpy()))


def test_the_pipeline_takes_the_torch_path_on_a_gpu_only(fakes):
    from depth_service.pipeline import _gpu_of

    backend = fakes.DepthBackend()
    assert _gpu_of(backend) is None
    backend.device = "cuda:1"
    assert _gpu_of(backend) == torch.device("cuda:1")

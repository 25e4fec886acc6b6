"""The perspective-view panorama path against a geometric oracle (``scene_dev.panorama_oracle``:
a synthetic room with known ray distances, and a fake perspective depth model).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from depth_service import panorama
from depth_service.panorama import PanoramaMode, ViewLayout
from scene_dev.panorama_oracle import (
    PerspectiveFake,
    errors_by_latitude,
    estimate_distance,
    render_panorama,
)


def fov_of(layout: ViewLayout) -> float:
    return panorama.CUBE_FOV_DEG if layout is ViewLayout.CUBE else panorama.ICOSAHEDRON_FOV_DEG


@pytest.mark.parametrize("layout", list(ViewLayout))
async def test_perspective_views_recover_ray_distance_at_every_latitude(layout):
    image, truth = render_panorama(256, 512)
    fake = PerspectiveFake(native=256, fov_deg=fov_of(layout), seed=3)
    distance, estimate = await estimate_distance(
        image, fake, panorama_mode=PanoramaMode.PERSPECTIVE, panorama_views=layout)
    assert fake.calls == len(panorama.view_layout(layout, 8))
    assert estimate.focal_length_px is None
    rows = errors_by_latitude(distance, truth)
    scale = np.median(truth / distance)
    seam = np.abs(scale * distance[:, [0, 1, -2, -1]] - truth[:, [0, 1, -2, -1]]) / truth[
        :, [0, 1, -2, -1]]
    tiled, _ = await estimate_distance(image, PerspectiveFake(native=256, fov_deg=90.0, seed=3),
                                       panorama_mode=PanoramaMode.EQUIRECT)
    tiled_rows = errors_by_latitude(tiled, truth)
    print(f"\n{layout}: worst row error perspective {rows.max():.4f} "
          f"(poles {rows[0]:.4f} / {rows[-1]:.4f}, seam {seam.mean():.4f}); "
          f"equirect tiling {tiled_rows.max():.4f} (mean {tiled_rows.mean():.4f})")
    assert rows.max() <= 0.02
    assert seam.mean() <= 0.02
    # The old path on the same scene and fake: the perspective path must be the better one.
    assert tiled_rows.max() > 2 * rows.max()


def test_views_cover_the_sphere_with_overlap():
    directions = panorama.sphere_directions(64, 128)
    for layout in ViewLayout:
        views = panorama.view_layout(layout, 64)
        seen = sum((panorama._footprint(v, directions).weight > 0).astype(int) for v in views)
        # Every direction seen; the face centres by one view, the rest shared for the fit.
        assert seen.min() >= 1, layout
        assert (seen >= 2).mean() > 0.3, layout


def test_render_view_looks_where_its_rotation_points():
    image, _ = render_panorama(128, 256)
    for view in panorama.view_layout(ViewLayout.CUBE, 33):
        crop = panorama.render_view(image, view)
        centre = crop[16, 16].astype(np.float64) / 127.5 - 1.0
        expected = view.rotation @ np.array([0.0, 0.0, -1.0])
        assert math.acos(np.clip(centre @ expected / np.linalg.norm(centre), -1, 1)) < 0.05


def test_upsampling_the_merge_wraps_across_the_seam():
    def field(height, width):
        lon = ((np.arange(width) + 0.5) / width - 0.5) * 2 * np.pi
        lat = (0.5 - (np.arange(height) + 0.5) / height) * np.pi
        return (2.0 + np.cos(lon)[None, :] * np.cos(lat)[:, None]).astype(np.float32)

    error = np.abs(panorama.upsample_wrapped(field(32, 64), 128, 256) - field(128, 256))
    # The first and last columns are interpolated across the seam, not clamped (rows clamp at
    # the poles, where the map is flat anyway).
    assert error[4:-4].max() < 0.01
    assert error[4:-4, [0, -1]].max() <= 1.5 * error[4:-4, 1:-1].max()

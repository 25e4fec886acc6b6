"""The perspective-view panorama path against a geometric oracle.

A synthetic room (walls, floor, ceiling, a box on the floor) with known ray distances is rendered
to an equirectangular panorama whose pixels encode each pixel's world ray direction. The fake
model behaves like a perspective depth model: it takes whatever image it gets as one pinhole view
(of the field of view the pipeline uses), finds the view's rotation from the pixels it sees
(orthogonal Procrustes between its own pinhole rays and the decoded directions), ray-casts the
scene and returns that view's *planar* depth as disparity with a random scale and shift per call.
Given an equirectangular image, it does what a pinhole model does with one: it takes the image
for a perspective view around its centre ray and returns planar depth along that axis.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from depth_service import panorama
from depth_service.backends import Prediction
from depth_service.panorama import PanoramaMode, ViewLayout
from depth_service.pipeline import DepthEstimate, DepthPipeline, EstimateOptions

ROOM_LO = np.array([-3.0, -1.5, -5.0])
ROOM_HI = np.array([4.0, 2.5, 3.0])
BOX_LO = np.array([0.5, -1.5, -3.0])
BOX_HI = np.array([1.5, -0.5, -2.0])


def ray_distance(directions: np.ndarray) -> np.ndarray:
    """Distance from the origin to the first surface along each unit direction [..., 3]."""
    d = np.where(np.abs(directions) < 1e-12, 1e-12, directions)
    # Inside the room: the nearest wall ahead on each axis.
    walls = np.where(d > 0, ROOM_HI, ROOM_LO) / d
    distance = walls.min(axis=-1)
    # The box: slab intersection.
    t1, t2 = BOX_LO / d, BOX_HI / d
    near = np.minimum(t1, t2).max(axis=-1)
    far = np.maximum(t1, t2).min(axis=-1)
    hit = (near <= far) & (near > 0)
    return np.where(hit, np.minimum(near, distance), distance)


def render_panorama(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    directions = panorama.sphere_directions(height, width)
    pixels = np.rint((directions + 1.0) * 127.5).astype(np.uint8)
    return pixels, ray_distance(directions)


class PerspectiveFake:
    """The backend side of the fake (what the pipeline reads) and its forward pass."""

    model_id = "fake/perspective"
    metric = True  # disparity as 1/metres, so the test reads the merged map back exactly

    def __init__(self, *, native: int, fov_deg: float, seed: int = 0) -> None:
        self.native_side = native
        self.fov_deg = fov_deg
        self.rng = np.random.default_rng(seed)
        self.calls = 0

    def predict(self, image: np.ndarray) -> np.ndarray:
        self.calls += 1
        decoded = image.astype(np.float64) / 127.5 - 1.0
        decoded /= np.linalg.norm(decoded, axis=-1, keepdims=True)
        height, width = image.shape[:2]
        if height == width:
            view = panorama.View(np.eye(3), self.fov_deg, height)
            rays = panorama.view_rays(view)
            unit = rays / np.linalg.norm(rays, axis=-1, keepdims=True)
            # The rotation that best maps this pinhole's rays onto the directions it sees.
            m = decoded.reshape(-1, 3).T @ unit.reshape(-1, 3)
            u, _, vt = np.linalg.svd(m)
            rotation = u @ np.diag([1.0, 1.0, np.linalg.det(u @ vt)]) @ vt
            world = unit @ rotation.T
            planar = ray_distance(world) * -unit[..., 2]
        else:
            axis = decoded[height // 2, width // 2]
            planar = ray_distance(decoded) * np.maximum(decoded @ axis, 0.05)
        inverse = 1.0 / planar
        scale = self.rng.uniform(0.5, 2.0)
        shift = self.rng.uniform(0.0, 0.5) * float(np.median(inverse)) * scale
        return (scale * inverse + shift).astype(np.float32)

    async def forward(self, images):
        return [Prediction(self.predict(np.asarray(image))) for image in images]


async def estimate_distance(image: np.ndarray, fake: PerspectiveFake,
                            **options) -> tuple[np.ndarray, DepthEstimate]:
    pipeline = DepthPipeline(fake, fake.forward, batch_size=4, max_tiles=64)
    events = [e async for e in pipeline.run(image, EstimateOptions(panorama=True, **options))]
    estimate = events[-1]
    assert isinstance(estimate, DepthEstimate)
    return estimate.depth_m.astype(np.float64), estimate


def errors_by_latitude(estimate: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Mean relative error of each row after the one best global scale."""
    scale = np.median(truth / estimate)
    relative = np.abs(scale * estimate - truth) / truth
    return relative.mean(axis=1)


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

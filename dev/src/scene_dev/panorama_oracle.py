"""A geometric oracle for the depth service's panorama paths: a synthetic room with known ray
distances, and a fake perspective depth model.

The room (walls, floor, ceiling, a box on the floor) is rendered to an equirectangular panorama
whose pixels encode each pixel's world ray direction. The fake model behaves like a perspective
depth model: it takes whatever image it gets as one pinhole view (of the field of view the
pipeline uses), finds the view's rotation from the pixels it sees (orthogonal Procrustes between
its own pinhole rays and the decoded directions), ray-casts the scene and returns that view's
*planar* depth as disparity with a random scale and shift per call. Given an equirectangular
image, it does what a pinhole model does with one: it takes the image for a perspective view
around its centre ray and returns planar depth along that axis.

Used by depth-service's tests/test_panorama.py and bench/bench_panorama.py.
"""

from __future__ import annotations

import numpy as np

from depth_service import panorama
from depth_service.backends import Prediction
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

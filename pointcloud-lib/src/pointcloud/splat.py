"""Gaussian splats in the 32-byte ``.splat`` layout that web splat renderers read.

The layout (antimatter15/splat, read by @mkkellogg/gaussian-splats-3d, Spark and others), one
record per Gaussian, little endian, no header:

=======  ==========  ======================================================================
bytes    type        meaning
=======  ==========  ======================================================================
0-11     float32 x3  position (metres)
12-23    float32 x3  scale: the standard deviation along the Gaussian's local x, y, z axes
24-27    uint8 x4    RGBA (A = opacity)
28-31    uint8 x4    rotation quaternion w, x, y, z (normalised), each byte ``q * 128 + 128``
=======  ==========  ======================================================================

One Gaussian per point. Its size is the footprint of the pixel it came from at its distance
(``distance x angular_step``, the angle one sampled pixel spans: stride / focal length for a
pinhole image, 2 pi stride / width for a panorama); it is a disc facing the viewer (flattened
along the view ray, its local z axis turned onto the ray), since a depth map sees surfaces only
from the camera.
"""

from __future__ import annotations

import numpy as np

from pointcloud.cloud import PointCloud
from pointcloud.descriptors import distances

RECORD = np.dtype(
    [("position", "<f4", 3), ("scale", "<f4", 3), ("rgba", "u1", 4), ("rotation", "u1", 4)]
)
assert RECORD.itemsize == 32

FOOTPRINT_SIGMAS = 0.6
"""Standard deviation of a Gaussian as a fraction of its pixel footprint: neighbours overlap
enough to close the gaps between them without blurring the picture."""

FLATNESS = 0.1
"""Thickness along the view ray relative to the width: a disc, not a ball."""


def to_splat(
    cloud: PointCloud, angular_step: float, opacity: np.ndarray | None = None
) -> bytes:
    """The cloud as ``.splat`` bytes, exactly 32 per point.

    ``angular_step`` is the angle (radians) one sampled pixel spans at the viewer. ``opacity``
    (uint8 per point) overrides the default of fully opaque, e.g. lower near depth edges.
    """
    if not (np.isfinite(angular_step) and angular_step > 0):
        raise ValueError(f"angular_step must be a positive angle, got {angular_step!r}")
    count = cloud.count
    records = np.zeros(count, RECORD)
    if count == 0:
        return records.tobytes()
    positions = cloud.positions
    distance = distances(positions)
    sigma = distance * np.float32(angular_step * FOOTPRINT_SIGMAS)
    records["position"] = positions
    scale = records["scale"]
    scale[:, 0] = sigma
    scale[:, 1] = sigma
    scale[:, 2] = sigma * np.float32(FLATNESS)
    records["rgba"][:, :3] = cloud.colors
    if opacity is None:
        records["rgba"][:, 3] = 255
    else:
        records["rgba"][:, 3] = opacity
    records["rotation"] = encode_rotation(facing_viewer(positions, distance))
    return records.tobytes()


def facing_viewer(positions: np.ndarray, distance: np.ndarray) -> np.ndarray:
    """float32 (N, 4) unit quaternions (w, x, y, z) turning the local +Z axis onto the
    direction from each point back to the viewer (the origin)."""
    safe = np.where(distance > 0, distance, 1).astype(np.float32)
    normal = -positions / safe[:, None]
    normal[distance <= 0] = (0, 0, 1)
    # The shortest rotation from z to n: (1 + z.n, z x n), normalised.
    quaternion = np.empty((positions.shape[0], 4), np.float32)
    quaternion[:, 0] = 1 + normal[:, 2]
    quaternion[:, 1] = -normal[:, 1]
    quaternion[:, 2] = normal[:, 0]
    quaternion[:, 3] = 0
    # n = -z (a point straight behind the viewer, on +Z): the formula degenerates; any half
    # turn about an axis in the XY plane does, this one about X.
    opposite = quaternion[:, 0] < 1e-6
    quaternion[opposite] = (0, 1, 0, 0)
    quaternion /= np.linalg.norm(quaternion, axis=1, keepdims=True)
    return quaternion


def encode_rotation(quaternion: np.ndarray) -> np.ndarray:
    """uint8 bytes ``round(q * 128 + 128)``, clipped to 0..255 (the layout's encoding)."""
    return np.clip(np.rint(quaternion * 128 + 128), 0, 255).astype(np.uint8)


def decode(buffer: bytes) -> np.ndarray:
    """The records of ``.splat`` bytes as a structured array (see :data:`RECORD`)."""
    if len(buffer) % RECORD.itemsize:
        raise ValueError(f"a .splat file is whole 32-byte records; got {len(buffer)} bytes")
    return np.frombuffer(buffer, RECORD)

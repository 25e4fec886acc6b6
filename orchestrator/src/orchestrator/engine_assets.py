"""The engine-ready files made from a stored cloud on request: ``scene.glb`` and ``scene.splat``.

Both are built by :meth:`GenerationStore.derived_asset` (once, then cached beside the stored
files); the builders here take the stored ``pointcloud.bin`` and the generation's record.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from pointcloud import DEFAULT_FOV_DEG, PointCloud, decode
from pointcloud.glb import Positions, to_glb
from pointcloud.splat import edge_opacity, to_gaussian_ply, to_splat

GLB = "scene.glb"
SPLAT = "scene.splat"
SPLAT_MEDIA_TYPE = "application/octet-stream"
GAUSSIAN_PLY = "gaussians.ply"


def build_glb(source: Path, record: dict[str, Any], positions: Positions = "auto") -> bytes:
    return glb_from_pcld(source.read_bytes(), positions)


def glb_from_pcld(buffer: bytes | memoryview, positions: Positions = "auto") -> bytes:
    """A PCLD buffer as GLB (its header's camera and descriptors become the scene's extras);
    ``positions`` as :func:`pointcloud.glb.to_glb` takes it."""
    return to_glb(decode(buffer), positions=positions)


def build_splat(source: Path, record: dict[str, Any]) -> bytes:
    cloud = decode(source.read_bytes())
    return to_splat(cloud, angular_step(cloud.header, record, cloud.count),
                    opacity(cloud, record))


def build_gaussian_ply(source: Path, record: dict[str, Any]) -> bytes:
    """The Gaussians of :func:`build_splat` as a 3D Gaussian Splatting PLY."""
    cloud = decode(source.read_bytes())
    return to_gaussian_ply(cloud, angular_step(cloud.header, record, cloud.count),
                           opacity(cloud, record))


def opacity(cloud: PointCloud, record: dict[str, Any]) -> np.ndarray | None:
    """Per-point opacity lowered near depth edges when the generation was cleaned with an edge
    mask (its record's ``edges.rtol``); None (opaque) otherwise."""
    rtol = (record.get("edges") or {}).get("rtol")
    return edge_opacity(cloud, float(rtol)) if rtol else None


def angular_step(header: dict[str, Any], record: dict[str, Any], count: int) -> float:
    """The angle (radians) one sampled pixel spans at the viewer.

    From the PCLD header's ``camera`` when it has one; otherwise from the record: the image
    width, the focal length (or the field of view the projection used) and the stride. When the
    cloud holds fewer points than the sampled grid (``max_points`` thinned it), points are that
    much further apart: the step grows by the square root of the ratio.
    """
    camera = header.get("camera") or {}
    image = record.get("image") or {}
    width = camera.get("width") or image.get("width") or 1
    height = camera.get("height") or image.get("height") or 1
    stride = camera.get("stride") or record.get("point_stride") or 1
    if header.get("mode") == "equirect" or camera.get("model") == "equirectangular":
        step = 2 * math.pi / width * stride
    else:
        focal = camera.get("fx") or record.get("focal_length_px")
        if not focal:
            fov = math.radians(record.get("fov_deg") or DEFAULT_FOV_DEG)
            focal = width / (2 * math.tan(fov / 2))
        step = stride / focal
    grid = math.ceil(width / stride) * math.ceil(height / stride)
    if 0 < count < grid:
        step *= math.sqrt(grid / count)
    return step

"""The exporters: a stored cloud (``pointcloud.bin``, PCLD v1) made into each file the API
serves beside it. orchestrator.formats lists them, one builder per output format.

A builder takes a :class:`BuildInput`: the PCLD buffer, what the generation's record says of the
cloud beyond its header (:class:`CloudFacts`), the request's option for the format, and, in the
pipeline only, the maps the cloud was projected from.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from orchestrator.enums import Geometry
from orchestrator.records import GenerationResult
from pointcloud import (
    DEFAULT_FOV_DEG,
    HEADER_KEYS,
    PointCloud,
    decode,
    encode,
    mesh_from_cloud,
    to_ply,
)
from pointcloud.glb import to_glb
from pointcloud.grid import pack_grid, pack_grid_from_cloud
from pointcloud.splat import edge_opacity, to_gaussian_ply, to_splat
from pointcloud.spz import to_spz


@dataclass(frozen=True)
class CloudFacts:
    """What the record says of a cloud that its PCLD header may not (older headers have no
    camera): the image size, the stride, the lens, the edge threshold the cloud was cleaned
    with."""

    width: int | None = None
    height: int | None = None
    point_stride: int | None = None
    focal_length_px: float | None = None
    fov_deg: float | None = None
    edge_rtol: float | None = None

    @classmethod
    def of(cls, result: GenerationResult) -> CloudFacts:
        image, edges = result.image, result.edges
        return cls(width=image.width if image else None, height=image.height if image else None,
                   point_stride=result.point_stride, focal_length_px=result.focal_length_px,
                   fov_deg=result.fov_deg, edge_rtol=edges.rtol if edges else None)


@dataclass(frozen=True)
class CloudMaps:
    """The per-pixel maps the pipeline projected (a format built from them loses nothing to
    the cloud's rounding): depth, colour, categories and the packing options used."""

    depth: np.ndarray
    rgb: np.ndarray
    categories: np.ndarray
    # "planar" or "equirect"
    projection: str
    pack_options: Mapping[str, Any]
    descriptors: Mapping[str, Any]


@dataclass(frozen=True)
class BuildInput:
    pcld: bytes | memoryview
    facts: CloudFacts = field(default_factory=CloudFacts)
    # The request's option for the format (scene.glb: "float" or "quantized" positions).
    option: str | None = None
    # Points, or the depth grid's triangles (formats that offer both: orchestrator.formats).
    geometry: Geometry = Geometry.POINTS
    maps: CloudMaps | None = None


def requantize(source: BuildInput) -> bytes:
    """A PCLD buffer re-packed with quantised positions (the same cloud, 10 bytes a point);
    header keys beyond the format's (camera, descriptors, ...) carry over."""
    cloud = decode(source.pcld)
    header = cloud.header
    extra = {k: v for k, v in header.items() if k not in HEADER_KEYS}
    return encode(cloud, mode=header["mode"], cloud_id=header["id"],
                  metadata=header.get("metadata"), quantized=True,
                  camera=header.get("camera"), extra_header=extra)


def grid(source: BuildInput) -> bytes:
    """The grid variant (PCLD version 2): from the maps when the pipeline has them, else every
    stored point put back on its pixel."""
    maps = source.maps
    if maps is None:
        return pack_grid_from_cloud(decode(source.pcld))
    return pack_grid(maps.depth, maps.rgb, maps.categories, mode=maps.projection,
                     extra_header={"descriptors": dict(maps.descriptors)}, **maps.pack_options)


def glb(source: BuildInput) -> bytes:
    """GLB (its header's camera and descriptors become the scene's extras); ``option`` chooses
    the positions as :func:`pointcloud.glb.to_glb` takes them (default "auto")."""
    return to_glb(decode(source.pcld), positions=source.option or "auto",
                  geometry=source.geometry.value)


def ply(source: BuildInput) -> bytes:
    cloud = decode(source.pcld)
    if source.geometry == Geometry.MESH:
        return to_ply(mesh_from_cloud(cloud))
    return to_ply(cloud)


def splat(source: BuildInput) -> bytes:
    cloud = decode(source.pcld)
    return to_splat(cloud, angular_step(cloud.header, source.facts, cloud.count),
                    opacity(cloud, source.facts))


def spz(source: BuildInput) -> bytes:
    """The Gaussians of :func:`splat` as SPZ (Niantic's compressed splat format, version 3)."""
    cloud = decode(source.pcld)
    return to_spz(cloud, angular_step(cloud.header, source.facts, cloud.count),
                  opacity(cloud, source.facts))


def gaussian_ply(source: BuildInput) -> bytes:
    """The Gaussians of :func:`splat` as a 3D Gaussian Splatting PLY."""
    cloud = decode(source.pcld)
    return to_gaussian_ply(cloud, angular_step(cloud.header, source.facts, cloud.count),
                           opacity(cloud, source.facts))


def opacity(cloud: PointCloud, facts: CloudFacts) -> np.ndarray | None:
    """Per-point opacity lowered near depth edges when the generation was cleaned with an edge
    mask (its record's ``edges.rtol``); None (opaque) otherwise."""
    return edge_opacity(cloud, float(facts.edge_rtol)) if facts.edge_rtol else None


def angular_step(header: Mapping[str, Any], facts: CloudFacts, count: int) -> float:
    """The angle (radians) one sampled pixel spans at the viewer.

    From the PCLD header's ``camera`` when it has one; otherwise from the record: the image
    width, the focal length (or the field of view the projection used) and the stride. When the
    cloud holds fewer points than the sampled grid (``max_points`` thinned it), points are that
    much further apart: the step grows by the square root of the ratio.
    """
    camera = header.get("camera") or {}
    width = camera.get("width") or facts.width or 1
    height = camera.get("height") or facts.height or 1
    stride = camera.get("stride") or facts.point_stride or 1
    if header.get("mode") == "equirect" or camera.get("model") == "equirectangular":
        step = 2 * math.pi / width * stride
    else:
        focal = camera.get("fx") or facts.focal_length_px
        if not focal:
            fov = math.radians(facts.fov_deg or DEFAULT_FOV_DEG)
            focal = width / (2 * math.tan(fov / 2))
        step = stride / focal
    grid_points = math.ceil(width / stride) * math.ceil(height / stride)
    if 0 < count < grid_points:
        step *= math.sqrt(grid_points / count)
    return step

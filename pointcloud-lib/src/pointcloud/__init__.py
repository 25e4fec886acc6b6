"""Point clouds for the 3D scene server: projection, the PCLD binary format, PLY and GLB export.

numpy (pygltflib for the GLB document). Coordinates: metres, right-handed, +Y up, viewer at the
origin looking down -Z.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from pointcloud.categories import CATEGORY_NAMES, CATEGORY_PALETTE
from pointcloud.cloud import PointCloud
from pointcloud.codec import (
    FORMAT_VERSION,
    GRID_VERSION,
    HEADER_KEYS,
    QUANTIZATION_LEVELS,
    decode,
    encode,
)
from pointcloud.edges import (
    DEFAULT_EDGE_RTOL,
    DEFAULT_GRAZING_DEG,
    MAX_EDGE_RTOL,
    edge_mask,
    grazing_mask,
)
from pointcloud.glb import to_glb
from pointcloud.grid import pack_grid, pack_grid_from_cloud, relative_error_bound
from pointcloud.pack import pack_equirect, pack_planar
from pointcloud.ply import to_ply
from pointcloud.projection import (
    DEFAULT_FOV_DEG,
    normalized_to_metres,
    project_equirect,
    project_planar,
)
from pointcloud.spz import to_spz

__all__ = [
    "CATEGORY_NAMES",
    "CATEGORY_PALETTE",
    "DEFAULT_EDGE_RTOL",
    "DEFAULT_FOV_DEG",
    "DEFAULT_GRAZING_DEG",
    "FORMAT_VERSION",
    "GRID_VERSION",
    "HEADER_KEYS",
    "MAX_EDGE_RTOL",
    "QUANTIZATION_LEVELS",
    "PointCloud",
    "decode",
    "edge_mask",
    "encode",
    "grazing_mask",
    "js_decoder_path",
    "normalized_to_metres",
    "pack_equirect",
    "pack_grid",
    "pack_grid_from_cloud",
    "pack_planar",
    "project_equirect",
    "project_planar",
    "relative_error_bound",
    "to_glb",
    "to_ply",
    "to_spz",
]


def js_decoder_path() -> Path:
    """Path of the browser decoder ``pcld.js`` (an ES module) shipped inside this package."""
    path = resources.files("pointcloud.js").joinpath("pcld.js")
    if not isinstance(path, Path):
        raise RuntimeError(f"pointcloud is installed as an archive; pcld.js is at {path}")
    return path

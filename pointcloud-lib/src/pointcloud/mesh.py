"""Triangle meshes from the depth grid: neighbouring pixels on one surface are neighbouring
vertices, so the grid already holds the connectivity a surface needs.

Every 2 x 2 block of kept pixels gives two triangles; a block with a dropped pixel (a flying
pixel the edge clean-up removed, a pixel without depth) gives none, so the foreground and the
background behind it stay separate surfaces. A triangle whose corners' distances from the
camera differ by more than ``max_jump`` times the nearest (the edge clean-up's relative range,
:data:`pointcloud.DEFAULT_EDGE_RTOL`) is left out too: a cloud made without the clean-up must
not be stitched across its jumps. On a grid cleaned at the same rtol it hardly ever fires: the
nearest corner's 3 x 3 range covers the triangle, so that corner would have been dropped (only
the small difference between distance along the ray and along the axis separates the two).

Triangles wind counter-clockwise seen from the camera (glTF's front face), so their normals
face the viewer; vertex normals are the area-weighted sums of the faces around each vertex.
Panoramas close the seam: the last column's blocks join the first column.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from pointcloud.cloud import PointCloud
from pointcloud.edges import DEFAULT_EDGE_RTOL, check_edge_rtol
from pointcloud.projection import grid_of_cloud, plan_equirect, plan_planar

UINT16_VERTICES = 65535
"""Most vertices uint16 indices can address: glTF reserves index 65535 (primitive restart)."""


@dataclass(frozen=True, eq=False)
class Mesh:
    """An indexed triangle mesh, in the point cloud's coordinates (metres, +Y up, camera at the
    origin looking down -Z): what a glTF TRIANGLES primitive or a PLY face list holds."""

    positions: np.ndarray  # (N, 3) float32
    colors: np.ndarray  # (N, 3) uint8
    categories: np.ndarray  # (N,) uint8, indices into CATEGORY_NAMES
    normals: np.ndarray  # (N, 3) float32, unit length
    indices: np.ndarray  # (M, 3) uint16 when N <= UINT16_VERTICES, else uint32

    @property
    def vertex_count(self) -> int:
        return len(self.positions)

    @property
    def triangle_count(self) -> int:
        return len(self.indices)


def mesh_from_cloud(cloud: PointCloud, *, max_jump: float | None = DEFAULT_EDGE_RTOL) -> Mesh:
    """The mesh of a decoded PCLD cloud (:func:`pointcloud.decode`, version 1 or 2) whose header
    carries its ``camera``, as every ``pack_*`` writes it: each point goes back to the pixel it
    came from, and kept neighbours are joined. This is how a server that stored only the cloud
    makes its mesh: ``mesh_from_cloud(decode(buffer))``."""
    grid = grid_of_cloud(cloud)
    return grid_mesh(cloud.positions, cloud.colors, cloud.segments, grid.pixels, grid.shape,
                     wrap=grid.wraps, max_jump=max_jump)


def mesh_planar(depth: np.ndarray, rgb: np.ndarray, categories: np.ndarray | None = None, *,
                max_jump: float | None = DEFAULT_EDGE_RTOL, **projection: Any) -> Mesh:
    """The mesh of :func:`pointcloud.project_planar` (same keyword arguments, ``edge_rtol``
    included: it decides which pixels are kept)."""
    _check_unthinned(projection)
    return _from_plan(plan_planar(depth, rgb, categories, **projection), False, max_jump)


def mesh_equirect(depth: np.ndarray, rgb: np.ndarray, categories: np.ndarray | None = None, *,
                  max_jump: float | None = DEFAULT_EDGE_RTOL, **projection: Any) -> Mesh:
    """The mesh of :func:`pointcloud.project_equirect`, closed across the seam."""
    _check_unthinned(projection)
    return _from_plan(plan_equirect(depth, rgb, categories, **projection), True, max_jump)


def _check_unthinned(projection: dict[str, Any]) -> None:
    if projection.get("max_points") is not None:
        # Thinning keeps every k-th pixel in raster order: no 2 x 2 block survives it.
        raise ValueError("max_points thins the grid into scattered pixels; use stride instead")


def _from_plan(plan: Any, wrap: bool, max_jump: float | None) -> Mesh:
    cloud = plan.to_cloud()
    shape = plan.grid.shape
    pixels = np.arange(math.prod(shape)) if plan.keep is None else np.flatnonzero(plan.keep)
    return grid_mesh(cloud.positions, cloud.colors, cloud.segments, pixels, shape, wrap=wrap,
                     max_jump=max_jump)


def grid_mesh(positions: np.ndarray, colors: np.ndarray, categories: np.ndarray,
              pixels: np.ndarray, shape: tuple[int, int], *, wrap: bool = False,
              max_jump: float | None = DEFAULT_EDGE_RTOL) -> Mesh:
    """The mesh of points that lie on a (rows, columns) ``shape`` grid: point i sits at flat
    pixel index ``pixels[i]`` (row-major, no two alike). Points that end up in no triangle (a
    lone pixel between dropped ones) are left out of the mesh; ``wrap`` joins the last column
    to the first (panoramas)."""
    positions = np.asarray(positions, np.float32)
    pixels = np.asarray(pixels, np.int64)
    height, width = shape
    if len(pixels) != len(positions) or len(colors) != len(positions) \
            or len(categories) != len(positions):
        raise ValueError("positions, colors, categories and pixels must have one entry a point")
    if len(pixels) and (pixels.min() < 0 or pixels.max() >= height * width):
        raise ValueError(f"pixel indices must lie in the {width}x{height} grid")
    vertex = np.full(height * width, -1, np.int64)
    vertex[pixels] = np.arange(len(pixels))
    if np.count_nonzero(vertex >= 0) != len(pixels):
        raise ValueError("two points share a pixel")
    triangles = _triangles(vertex.reshape(height, width), wrap)
    if max_jump is not None and len(triangles):
        triangles = _without_jumps(triangles, positions, check_edge_rtol(max_jump))
    return _assemble(positions, colors, categories, triangles)


def _triangles(vertex: np.ndarray, wrap: bool) -> np.ndarray:
    """(M, 3) vertex indices, two triangles per 2 x 2 block whose four pixels hold a vertex.

    With a = (r, c), b = (r, c + 1), c = (r + 1, c), d = (r + 1, c + 1): columns grow to the
    right and rows downwards in the picture, so (a, c, b) and (b, c, d) run counter-clockwise as
    the camera sees them, pinhole or panorama (seen from inside)."""
    if wrap and vertex.shape[1] < 3:
        wrap = False  # 1 or 2 columns: the seam's block would repeat a pixel
    right = np.roll(vertex, -1, axis=1) if wrap else vertex[:, 1:]
    left = vertex if wrap else vertex[:, :-1]
    a, b = left[:-1], right[:-1]
    c, d = left[1:], right[1:]
    full = (a >= 0) & (b >= 0) & (c >= 0) & (d >= 0)
    a, b, c, d = a[full], b[full], c[full], d[full]
    # Interleaved so each block's two triangles are neighbours in the index buffer.
    return np.stack([np.stack([a, c, b], 1), np.stack([b, c, d], 1)], 1).reshape(-1, 3)


def _without_jumps(triangles: np.ndarray, positions: np.ndarray, max_jump: float) -> np.ndarray:
    """The triangles whose corners' distances from the camera lie within ``max_jump`` (relative
    to the nearest) of each other: the edge clean-up's range test, per triangle."""
    distance = np.sqrt(np.einsum("ij,ij->i", positions, positions))
    corner = [distance[triangles[:, k]] for k in range(3)]
    near = np.minimum(np.minimum(corner[0], corner[1]), corner[2])
    far = np.maximum(np.maximum(corner[0], corner[1]), corner[2])
    return triangles[far - near <= np.float32(max_jump) * near]


def _assemble(positions: np.ndarray, colors: np.ndarray, categories: np.ndarray,
              triangles: np.ndarray) -> Mesh:
    used = np.zeros(len(positions), bool)
    used[triangles.ravel()] = True
    renumber = np.cumsum(used) - 1
    positions = np.ascontiguousarray(positions[used])
    triangles = renumber[triangles]
    index_type = np.uint16 if len(positions) <= UINT16_VERTICES else np.uint32
    return Mesh(
        positions=positions,
        colors=np.ascontiguousarray(np.asarray(colors, np.uint8)[used]),
        categories=np.ascontiguousarray(np.asarray(categories, np.uint8)[used]),
        normals=vertex_normals(positions, triangles),
        indices=triangles.astype(index_type),
    )


def vertex_normals(positions: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Unit (N, 3) normals, each the sum of its faces' normals weighted by their areas (the
    cross product's length is twice the area, so plain sums weight it). A vertex whose faces
    cancel out faces the camera."""
    p = np.asarray(positions, np.float32)
    first, second, third = (p[triangles[:, k]] for k in range(3))
    second -= first
    third -= first
    (ax, ay, az), (bx, by, bz) = second.T, third.T
    face = (ay * bz - az * by, az * bx - ax * bz, ax * by - ay * bx)
    corners = triangles.T.ravel()  # each face's first corners, then its second, then third
    normal = np.empty((len(p), 3))
    for axis in range(3):
        # bincount sums per vertex in one pass (np.add.at is several times slower).
        normal[:, axis] = np.bincount(corners, np.tile(face[axis], 3), minlength=len(p))
    length = np.sqrt(np.einsum("ij,ij->i", normal, normal))
    flat = length < 1e-30
    if flat.any():
        normal[flat] = -p[flat]  # towards the camera at the origin
        length[flat] = np.maximum(np.linalg.norm(p[flat], axis=1), 1e-30)
    normal /= length[:, None]
    return normal.astype(np.float32)

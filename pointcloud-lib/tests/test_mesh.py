"""Meshes from the depth grid: connectivity, separation at jumps, winding, normals, the seam, and
the same mesh from a stored (decoded) cloud (the PLY of a mesh: test_ply.py)."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from pointcloud import (
    DEFAULT_EDGE_RTOL,
    Mesh,
    decode,
    mesh_equirect,
    mesh_from_cloud,
    mesh_planar,
    pack_equirect,
    pack_planar,
)
from pointcloud.mesh import UINT16_VERTICES, grid_mesh


def _photo(height: int = 48, width: int = 64, seed: int = 0):
    """A smooth slanted surface (no jump) with colours and categories."""
    rng = np.random.default_rng(seed)
    v, u = np.mgrid[0:height, 0:width].astype(np.float32)
    depth = 3.0 + 0.02 * u + 0.01 * v + 0.05 * np.sin(u / 6)
    rgb = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    categories = rng.integers(0, 6, (height, width), dtype=np.uint8)
    return depth.astype(np.float32), rgb, categories


def _face_normals(mesh: Mesh) -> np.ndarray:
    corner = mesh.positions.astype(np.float64)[mesh.indices.astype(np.int64)]
    return np.cross(corner[:, 1] - corner[:, 0], corner[:, 2] - corner[:, 0])


def test_a_full_grid_gives_two_triangles_per_block():
    depth, rgb, categories = _photo()
    mesh = mesh_planar(depth, rgb, categories, depth_is_metric=True)
    height, width = depth.shape
    assert mesh.vertex_count == height * width
    assert mesh.triangle_count == 2 * (height - 1) * (width - 1)
    # The bound for a photo without large masked regions.
    assert 1.5 * mesh.vertex_count <= mesh.triangle_count <= 2 * mesh.vertex_count
    assert mesh.positions.dtype == np.float32 and mesh.positions.shape == (height * width, 3)
    assert mesh.colors.dtype == np.uint8 and mesh.categories.dtype == np.uint8
    assert mesh.normals.dtype == np.float32 and mesh.indices.dtype == np.uint16
    # Vertices are the projection's points, in raster order, with their colours and categories.
    np.testing.assert_array_equal(mesh.colors, rgb.reshape(-1, 3))
    np.testing.assert_array_equal(mesh.categories, categories.ravel())


def test_triangles_face_the_camera_and_normals_agree():
    depth, rgb, _ = _photo()
    mesh = mesh_planar(depth, rgb, depth_is_metric=True, fov_deg=70.0)
    face = _face_normals(mesh)
    centre = mesh.positions[mesh.indices.astype(np.int64)].mean(axis=1)
    # Facing the camera at the origin: the normal points back along the ray.
    assert ((face * centre).sum(axis=1) < 0).all()
    assert ((mesh.normals * mesh.positions).sum(axis=1) < 0).all()
    np.testing.assert_allclose(np.linalg.norm(mesh.normals, axis=1), 1.0, rtol=1e-5)
    # Area-weighted vertex normals (the cross product's length is twice the face's area).
    summed = np.zeros((mesh.vertex_count, 3))
    for corner in range(3):
        np.add.at(summed, mesh.indices[:, corner].astype(np.int64), face)
    reference = summed / np.linalg.norm(summed, axis=1, keepdims=True)
    np.testing.assert_allclose(mesh.normals, reference, atol=1e-5)


def test_no_triangle_crosses_a_removed_edge():
    depth, rgb, _ = _photo()
    depth[:, 32:] += 5.0  # a foreground surface before a background 5 m further
    mesh = mesh_planar(depth, rgb, depth_is_metric=True, edge_rtol=DEFAULT_EDGE_RTOL)
    distance = np.linalg.norm(mesh.positions, axis=1)[mesh.indices.astype(np.int64)]
    assert (distance.max(axis=1) / distance.min(axis=1) < 1 + DEFAULT_EDGE_RTOL).all()
    # Two separate surfaces: trimesh splits the mesh into two connected bodies.
    parts = trimesh.Trimesh(mesh.positions, mesh.indices, process=False).split(
        only_watertight=False)
    assert len(parts) == 2


def test_a_cloud_made_without_the_clean_up_is_not_stitched_across_jumps():
    depth, rgb, _ = _photo()
    depth[:, 32:] += 5.0
    stitched = mesh_planar(depth, rgb, depth_is_metric=True, max_jump=None)
    separate = mesh_planar(depth, rgb, depth_is_metric=True)
    height = depth.shape[0]
    # The column of blocks across the jump is the only difference.
    assert stitched.triangle_count - separate.triangle_count == 2 * (height - 1)


def test_the_panorama_closes_its_seam():
    height, width = 16, 32
    depth = np.full((height, width), 4.0, np.float32)
    rgb = np.zeros((height, width, 3), np.uint8)
    mesh = mesh_equirect(depth, rgb, depth_is_metric=True)
    assert mesh.triangle_count == 2 * (height - 1) * width
    face = _face_normals(mesh)
    centre = mesh.positions[mesh.indices.astype(np.int64)].mean(axis=1)
    assert ((face * centre).sum(axis=1) < 0).all()  # seen from inside, every one faces in
    # Every edge between the seam's columns is shared by two triangles: no open seam.
    edges = np.sort(mesh.indices[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2).astype(np.int64), axis=1)
    unique, counts = np.unique(edges, axis=0, return_counts=True)
    boundary = unique[counts == 1]
    rows = boundary // width
    assert set(np.unique(rows)) <= {0, height - 1}  # only the top and bottom rows stay open


def test_a_stored_cloud_gives_the_same_mesh(shared_dir):
    depth, rgb, categories = _photo()
    depth[10:30, 20:40] -= 1.5  # a box before the surface
    kwargs = dict(depth_is_metric=True, edge_rtol=DEFAULT_EDGE_RTOL, focal_length_px=60.0)
    direct = mesh_planar(depth, rgb, categories, **kwargs)
    stored = pack_planar(depth, rgb, categories, cloud_id="m", **kwargs)
    from_cloud = mesh_from_cloud(decode(stored))
    np.testing.assert_array_equal(from_cloud.indices, direct.indices)
    np.testing.assert_array_equal(from_cloud.positions, direct.positions)
    np.testing.assert_array_equal(from_cloud.colors, direct.colors)
    np.testing.assert_array_equal(from_cloud.categories, direct.categories)
    # Quantised positions move by under a step: the points still find their pixels.
    quantized = mesh_from_cloud(decode(pack_planar(depth, rgb, categories, cloud_id="q",
                                                   quantized=True, **kwargs)))
    np.testing.assert_array_equal(quantized.indices, direct.indices)


def test_a_stored_panorama_gives_the_same_mesh():
    height, width = 24, 48
    depth = np.full((height, width), 5.0, np.float32)
    depth[:, :4] = 2.0  # a pillar on the seam
    depth[:, -4:] = 2.0
    rgb = np.zeros((height, width, 3), np.uint8)
    kwargs = dict(depth_is_metric=True, edge_rtol=DEFAULT_EDGE_RTOL)
    direct = mesh_equirect(depth, rgb, **kwargs)
    from_cloud = mesh_from_cloud(decode(pack_equirect(depth, rgb, cloud_id="p", **kwargs)))
    np.testing.assert_array_equal(from_cloud.indices, direct.indices)


def test_large_meshes_use_uint32_indices():
    mesh = mesh_planar(*_photo(300, 300)[:2], depth_is_metric=True)
    assert mesh.vertex_count > UINT16_VERTICES and mesh.indices.dtype == np.uint32
    assert int(mesh.indices.max()) == mesh.vertex_count - 1


def test_lone_pixels_are_left_out():
    positions = np.array([[0, 0, -9], [1, 0, -9], [0, -1, -9], [1, -1, -9], [5, 5, -9]],
                         np.float32)
    pixels = np.array([0, 1, 4, 5, 15])  # a 2 x 2 block and one lone pixel of a 4 x 4 grid
    mesh = grid_mesh(positions, np.zeros((5, 3), np.uint8), np.zeros(5, np.uint8), pixels,
                     (4, 4))
    assert mesh.vertex_count == 4 and mesh.triangle_count == 2


def test_a_cloud_without_a_camera_is_refused(make_cloud):
    with pytest.raises(ValueError, match="camera"):
        mesh_from_cloud(make_cloud(10))


def test_thinned_grids_are_refused():
    with pytest.raises(ValueError, match="max_points"):
        mesh_planar(*_photo()[:2], depth_is_metric=True, max_points=100)

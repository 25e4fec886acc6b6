"""A stored cloud as glTF 2.0 binary (GLB): what web engines' stock loaders read.

One mesh with one POINTS primitive (``geometry="points"``, the default), or one TRIANGLES
primitive (``geometry="mesh"``: :func:`pointcloud.mesh.mesh_from_cloud`, two triangles per 2 x 2
block of kept pixels, none across a dropped edge), with:

- ``POSITION``: float32 VEC3, tightly packed (12 bytes a point), with the min/max glTF requires
  (the PCLD header's exact bounds).
- ``COLOR_0``: uint8 VEC3, normalised, in a view with a 4-byte stride: glTF requires every
  vertex attribute element to start on a 4-byte boundary, and a VEC4 would make loaders treat
  the fourth byte as alpha.
- ``_SEGMENT``: uint8 SCALAR, the category index (an application-specific attribute: glTF
  reserves names without a leading underscore), also with a 4-byte stride.

A mesh adds ``NORMAL`` (float32 VEC3, unit length) and its indices (uint16 where every vertex
fits, else uint32), and an unlit material (``KHR_materials_unlit``, with a dielectric, fully
rough fallback): the colours are the photo's, already lit; glTF's default material is a metal,
which renders black without an environment map.

20 bytes a point in all. Or, by default when the error stays within :data:`POSITION_ERROR_M`,
``POSITION`` quantised with KHR_mesh_quantization: uint16 VEC3 (not normalised), stride 8,
holding PCLD's own quantisation levels (``pointcloud.quantize``: ``q = round((p - min) / step)``,
step = extent / 65535 rounded up to a float32), and the node's ``scale`` (the step) and
``translation`` (the bounds' minimum) turn them back into metres, ``p = q * step + min``: PCLD's
formula, so its error bound (FORMAT.md, "Quantised positions") holds as stated there for a
reader that applies the transform in float32:

    |decoded - original| <= step / 2 + 2^-22 * max(|min|, |max|) + 2^-149

16 bytes a point. The extension is in ``extensionsUsed`` and ``extensionsRequired`` (a reader
without it would misplace the points). Integer, not normalised, levels keep the node transform
the whole decoding: trimesh (4.x) ignores ``normalized`` and reads them right. A scene 20 m
across stays within 0.16 mm; the 1 mm default fits scenes up to about 130 m across on their
widest axis, wider ones keep float32.

The scene's ``extras`` hold the categories, the palette, the camera
(when the PCLD header has one) and the audio descriptors; three.js puts them in
``gltf.scene.userData``. Positions keep the PCLD convention, which is glTF's own: metres,
right-handed, +Y up, the viewer at the origin looking down -Z.

pygltflib builds and serialises the document; the binary chunk is built here with numpy
(pygltflib's accessor helpers go through Python lists, far too slow for millions of points),
and so is the 28-byte GLB container around the two: pygltflib's serialiser deletes null and
empty values recursively, inside ``extras`` too (a category without points would lose its
``"centroid": null``), and its ``save_to_bytes`` copies the binary chunk twice more.
"""

from __future__ import annotations

import json
from typing import Any, Literal

import numpy as np
import pygltflib

from pointcloud.categories import CATEGORY_NAMES, CATEGORY_PALETTE
from pointcloud.cloud import PointCloud
from pointcloud.codec import quantization_step, quantize
from pointcloud.mesh import Mesh, mesh_from_cloud

MEDIA_TYPE = "model/gltf-binary"
SEGMENT_ATTRIBUTE = "_SEGMENT"
_POINTS, _TRIANGLES = 0, 4  # glTF primitive modes
QUANTIZATION_EXTENSION = "KHR_mesh_quantization"
UNLIT_EXTENSION = "KHR_materials_unlit"
POSITION_ERROR_M = 1e-3
"""The stated error: ``positions="auto"`` quantises when :func:`quantized_error_bound` is within
it (a millimetre: far below what a depth model resolves)."""

Positions = Literal["auto", "float", "quantized"]
Geometry = Literal["points", "mesh"]


def quantized_error_bound(lo: np.ndarray, hi: np.ndarray) -> float:
    """Metres: the largest per-coordinate error of quantised positions within [lo, hi]."""
    step = quantization_step(lo, hi).astype(np.float64)
    magnitude = max(np.abs(lo).max(), np.abs(hi).max())
    return float(step.max() / 2 + 2.0**-22 * magnitude + 2.0**-149)


def to_glb(cloud: PointCloud, extras: dict[str, Any] | None = None, *,
           positions: Positions = "auto", geometry: Geometry = "points") -> bytes:
    """The cloud as GLB bytes. ``extras`` adds to the scene's extras; by default they hold what
    the cloud's PCLD header says (categories, palette, camera, descriptors, id, mode).

    ``positions``: ``float`` (float32, exact), ``quantized`` (KHR_mesh_quantization, whatever
    the error) or ``auto`` (quantised when its error bound is within :data:`POSITION_ERROR_M`).
    ``geometry``: ``points`` (every point) or ``mesh`` (the triangles of the depth grid, from the
    header's camera: :func:`pointcloud.mesh.mesh_from_cloud`).

    A cloud with no points (or a mesh with no triangle) gives a valid GLB with an empty scene
    (glTF has no empty accessor).
    """
    header = cloud.header
    scene_extras: dict[str, Any] = {
        "categories": list(header.get("categories", CATEGORY_NAMES)),
        "palette": header.get("palette", CATEGORY_PALETTE.tolist()),
        "id": header.get("id"),
        "mode": header.get("mode"),
        "point_count": cloud.count,
    }
    for key in ("camera", "descriptors"):
        if key in header:
            scene_extras[key] = header[key]
    if geometry == "mesh":
        mesh = mesh_from_cloud(cloud)
        scene_extras["geometry"] = "mesh"
        scene_extras["triangle_count"] = mesh.triangle_count
        scene_extras.update(extras or {})
        return _document(scene_extras, mesh.positions, mesh.colors, mesh.categories, positions,
                         normals=mesh.normals, indices=mesh.indices)
    if geometry != "points":
        raise ValueError(f"geometry must be 'points' or 'mesh', not {geometry!r}")
    scene_extras.update(extras or {})
    return _document(scene_extras, cloud.positions, cloud.colors, cloud.segments, positions,
                     bounds=cloud.bounds() if cloud.count else None)


def mesh_to_glb(mesh: Mesh, extras: dict[str, Any] | None = None, *,
                positions: Positions = "auto") -> bytes:
    """A :class:`pointcloud.mesh.Mesh` as GLB: one TRIANGLES primitive, ``extras`` as the
    scene's extras."""
    return _document(dict(extras or {}), mesh.positions, mesh.colors, mesh.categories,
                     positions, normals=mesh.normals, indices=mesh.indices)


def _document(scene_extras: dict[str, Any], points: np.ndarray, colors: np.ndarray,
              segments: np.ndarray, positions: Positions, *,
              bounds: tuple[np.ndarray, np.ndarray] | None = None,
              normals: np.ndarray | None = None, indices: np.ndarray | None = None) -> bytes:
    """The GLB of one primitive: POINTS, or TRIANGLES when ``indices`` (M, 3) are given (with
    per-vertex ``normals``)."""
    gltf = pygltflib.GLTF2(
        asset=pygltflib.Asset(version="2.0", generator="scene-server pointcloud-lib"),
        scene=0,
        scenes=[pygltflib.Scene()],
    )
    count = len(points)
    if count == 0 or (indices is not None and len(indices) == 0):
        return _container(gltf, scene_extras, None)

    if bounds is None:
        lo = points.min(axis=0).astype(np.float32)
        hi = points.max(axis=0).astype(np.float32)
    else:
        lo, hi = bounds
    quantized = positions == "quantized" or (
        positions == "auto" and quantized_error_bound(lo, hi) <= POSITION_ERROR_M)
    triangles = indices is not None
    # Every attribute element starts on a 4-byte boundary (glTF): uint16 x3 takes a stride of 8.
    # Each section's length is a multiple of 4, so the index section after them is aligned.
    position_size, padded_size = (8 if quantized else 12) * count, 4 * count
    normal_size = 12 * count if triangles else 0
    index_size = indices.size * indices.itemsize if triangles else 0
    offsets = np.cumsum([0, position_size, normal_size, padded_size, padded_size, index_size])
    blob = np.zeros(int(offsets[-1]), np.uint8)
    node = pygltflib.Node(name="pointcloud" if not triangles else "mesh", mesh=0)
    views = []
    accessors = []

    def add(offset: int, size: int, accessor: pygltflib.Accessor, stride: int | None,
            target: int = pygltflib.ARRAY_BUFFER) -> int:
        views.append(pygltflib.BufferView(buffer=0, byteOffset=int(offset), byteLength=int(size),
                                          byteStride=stride, target=target))
        accessor.bufferView = len(views) - 1
        accessors.append(accessor)
        return len(accessors) - 1

    section = blob[offsets[0]:offsets[1]]
    if quantized:
        step = quantization_step(lo, hi)
        levels = quantize(points, lo, step)
        section.view("<u2").reshape(count, 4)[:, :3] = levels
        position = add(offsets[0], position_size, pygltflib.Accessor(
            componentType=pygltflib.UNSIGNED_SHORT, count=count, type=pygltflib.VEC3,
            min=levels.min(axis=0).tolist(), max=levels.max(axis=0).tolist()), 8)
        # q * step + min, float32 values. An axis without extent (step 0, every q 0) keeps
        # scale 1: an invertible matrix.
        scale = np.array([float(s) if s > 0 else 1.0 for s in step])
        node.translation = [float(v) for v in lo]
        node.scale = scale.tolist()
        gltf.extensionsUsed = [QUANTIZATION_EXTENSION]
        gltf.extensionsRequired = [QUANTIZATION_EXTENSION]
    else:
        scale = None
        section[:] = np.ascontiguousarray(points, dtype="<f4").view(np.uint8).ravel()
        position = add(offsets[0], position_size, pygltflib.Accessor(
            componentType=pygltflib.FLOAT, count=count, type=pygltflib.VEC3,
            min=[float(v) for v in lo], max=[float(v) for v in hi]), None)
    attributes = pygltflib.Attributes(POSITION=position)
    if triangles:
        if scale is not None:
            # Loaders turn normals by the node's inverse transpose (1 / scale per axis): stored
            # as n * scale, renormalised, they come out as n.
            normals = normals * scale.astype(np.float32)
            normals /= np.linalg.norm(normals, axis=1, keepdims=True)
        blob[offsets[1]:offsets[2]] = np.ascontiguousarray(
            normals, dtype="<f4").view(np.uint8).ravel()
        attributes.NORMAL = add(offsets[1], normal_size, pygltflib.Accessor(
            componentType=pygltflib.FLOAT, count=count, type=pygltflib.VEC3), None)
    blob[offsets[2]:offsets[3]].reshape(count, 4)[:, :3] = colors
    attributes.COLOR_0 = add(offsets[2], padded_size, pygltflib.Accessor(
        componentType=pygltflib.UNSIGNED_BYTE, count=count, type=pygltflib.VEC3,
        normalized=True), 4)
    blob[offsets[3]:offsets[4]].reshape(count, 4)[:, 0] = segments
    setattr(attributes, SEGMENT_ATTRIBUTE, add(offsets[3], padded_size, pygltflib.Accessor(
        componentType=pygltflib.UNSIGNED_BYTE, count=count, type=pygltflib.SCALAR), 4))
    primitive = pygltflib.Primitive(attributes=attributes, mode=_POINTS)
    if triangles:
        wide = indices.dtype.itemsize == 4
        blob[offsets[4]:offsets[5]] = np.ascontiguousarray(
            indices, dtype="<u4" if wide else "<u2").view(np.uint8).ravel()
        primitive.indices = add(offsets[4], index_size, pygltflib.Accessor(
            componentType=pygltflib.UNSIGNED_INT if wide else pygltflib.UNSIGNED_SHORT,
            count=int(indices.size), type=pygltflib.SCALAR),
            None, pygltflib.ELEMENT_ARRAY_BUFFER)
        primitive.mode = _TRIANGLES
        primitive.material = 0
        gltf.materials = [pygltflib.Material(
            name="photo colours", extensions={UNLIT_EXTENSION: {}},
            pbrMetallicRoughness=pygltflib.PbrMetallicRoughness(metallicFactor=0.0,
                                                                roughnessFactor=1.0))]
        gltf.extensionsUsed = [*gltf.extensionsUsed, UNLIT_EXTENSION]

    gltf.buffers = [pygltflib.Buffer(byteLength=blob.size)]
    gltf.bufferViews = views
    gltf.accessors = accessors
    gltf.meshes = [pygltflib.Mesh(name=node.name, primitives=[primitive])]
    gltf.nodes = [node]
    gltf.scenes[0].nodes = [0]
    return _container(gltf, scene_extras, blob)


def _container(gltf: pygltflib.GLTF2, scene_extras: dict[str, Any],
               blob: np.ndarray | None) -> bytes:
    """The GLB: 12-byte header, the JSON chunk (space-padded), the BIN chunk if any (a
    document without points has no buffer: a zero-length buffer is invalid glTF)."""
    document = json.loads(gltf.gltf_to_json(separators=(",", ":"), indent=None))
    document["scenes"][0]["extras"] = scene_extras
    json_chunk = json.dumps(document, separators=(",", ":"), allow_nan=False).encode("utf-8")
    json_chunk += b" " * (-len(json_chunk) % 4)
    chunks = [_u32(len(json_chunk)), b"JSON", json_chunk]
    if blob is not None:
        chunks += [_u32(blob.size), b"BIN\0", memoryview(blob)]  # 16 or 20 a point: aligned
    length = 12 + sum(len(c) if not isinstance(c, memoryview) else c.nbytes for c in chunks)
    return b"".join((b"glTF", _u32(2), _u32(length), *chunks))


def _u32(value: int) -> bytes:
    return int(value).to_bytes(4, "little")

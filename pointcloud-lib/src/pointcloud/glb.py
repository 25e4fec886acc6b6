"""A stored cloud as glTF 2.0 binary (GLB): what web engines' stock loaders read.

One mesh with one POINTS primitive:

- ``POSITION``: float32 VEC3, tightly packed (12 bytes a point), with the min/max glTF requires
  (the PCLD header's exact bounds).
- ``COLOR_0``: uint8 VEC3, normalised, in a view with a 4-byte stride: glTF requires every
  vertex attribute element to start on a 4-byte boundary, and a VEC4 would make loaders treat
  the fourth byte as alpha.
- ``_SEGMENT``: uint8 SCALAR, the category index (an application-specific attribute: glTF
  reserves names without a leading underscore), also with a 4-byte stride.

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

MEDIA_TYPE = "model/gltf-binary"
SEGMENT_ATTRIBUTE = "_SEGMENT"
_POINTS = 0  # glTF primitive mode
QUANTIZATION_EXTENSION = "KHR_mesh_quantization"
POSITION_ERROR_M = 1e-3
"""The stated error: ``positions="auto"`` quantises when :func:`quantized_error_bound` is within
it (a millimetre: far below what a depth model resolves)."""

Positions = Literal["auto", "float", "quantized"]


def quantized_error_bound(lo: np.ndarray, hi: np.ndarray) -> float:
    """Metres: the largest per-coordinate error of quantised positions within [lo, hi]."""
    step = quantization_step(lo, hi).astype(np.float64)
    magnitude = max(np.abs(lo).max(), np.abs(hi).max())
    return float(step.max() / 2 + 2.0**-22 * magnitude + 2.0**-149)


def to_glb(cloud: PointCloud, extras: dict[str, Any] | None = None, *,
           positions: Positions = "auto") -> bytes:
    """The cloud as GLB bytes. ``extras`` adds to the scene's extras; by default they hold what
    the cloud's PCLD header says (categories, palette, camera, descriptors, id, mode).

    ``positions``: ``float`` (float32, exact), ``quantized`` (KHR_mesh_quantization, whatever
    the error) or ``auto`` (quantised when its error bound is within :data:`POSITION_ERROR_M`).

    A cloud with no points gives a valid GLB with an empty scene (glTF has no empty accessor).
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
    scene_extras.update(extras or {})
    gltf = pygltflib.GLTF2(
        asset=pygltflib.Asset(version="2.0", generator="scene-server orchestrator"),
        scene=0,
        scenes=[pygltflib.Scene()],
    )
    if cloud.count == 0:
        return _container(gltf, scene_extras, None)

    count = cloud.count
    lo, hi = cloud.bounds()
    quantized = positions == "quantized" or (
        positions == "auto" and quantized_error_bound(lo, hi) <= POSITION_ERROR_M)
    # Every attribute element starts on a 4-byte boundary (glTF): uint16 x3 takes a stride of 8.
    position_size, padded_size = (8 if quantized else 12) * count, 4 * count
    blob = np.zeros(position_size + 2 * padded_size, np.uint8)
    node = pygltflib.Node(name="pointcloud", mesh=0)
    if quantized:
        step = quantization_step(lo, hi)
        levels = quantize(cloud.positions, lo, step)
        blob[:position_size].view("<u2").reshape(count, 4)[:, :3] = levels
        position_accessor = pygltflib.Accessor(
            bufferView=0, componentType=pygltflib.UNSIGNED_SHORT, count=count,
            type=pygltflib.VEC3,
            min=levels.min(axis=0).tolist(), max=levels.max(axis=0).tolist())
        position_view = pygltflib.BufferView(buffer=0, byteOffset=0, byteLength=position_size,
                                             byteStride=8, target=pygltflib.ARRAY_BUFFER)
        # q * step + min, float32 values. An axis without extent (step 0, every q 0) keeps
        # scale 1: an invertible matrix.
        node.translation = [float(v) for v in lo]
        node.scale = [float(s) if s > 0 else 1.0 for s in step]
        gltf.extensionsUsed = [QUANTIZATION_EXTENSION]
        gltf.extensionsRequired = [QUANTIZATION_EXTENSION]
    else:
        blob[:position_size] = np.ascontiguousarray(
            cloud.positions, dtype="<f4").view(np.uint8).ravel()
        position_accessor = pygltflib.Accessor(
            bufferView=0, componentType=pygltflib.FLOAT, count=count, type=pygltflib.VEC3,
            min=[float(v) for v in lo], max=[float(v) for v in hi])
        position_view = pygltflib.BufferView(buffer=0, byteOffset=0, byteLength=position_size,
                                             target=pygltflib.ARRAY_BUFFER)
    colors = blob[position_size : position_size + padded_size].reshape(count, 4)
    colors[:, :3] = cloud.colors
    segments = blob[position_size + padded_size :].reshape(count, 4)
    segments[:, 0] = cloud.segments

    gltf.buffers = [pygltflib.Buffer(byteLength=blob.size)]
    gltf.bufferViews = [
        position_view,
        pygltflib.BufferView(buffer=0, byteOffset=position_size, byteLength=padded_size,
                             byteStride=4, target=pygltflib.ARRAY_BUFFER),
        pygltflib.BufferView(buffer=0, byteOffset=position_size + padded_size,
                             byteLength=padded_size, byteStride=4, target=pygltflib.ARRAY_BUFFER),
    ]
    gltf.accessors = [
        position_accessor,
        pygltflib.Accessor(bufferView=1, componentType=pygltflib.UNSIGNED_BYTE, count=count,
                           type=pygltflib.VEC3, normalized=True),
        pygltflib.Accessor(bufferView=2, componentType=pygltflib.UNSIGNED_BYTE, count=count,
                           type=pygltflib.SCALAR),
    ]
    attributes = pygltflib.Attributes(POSITION=0, COLOR_0=1)
    setattr(attributes, SEGMENT_ATTRIBUTE, 2)
    gltf.meshes = [pygltflib.Mesh(name="pointcloud", primitives=[
        pygltflib.Primitive(attributes=attributes, mode=_POINTS)])]
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

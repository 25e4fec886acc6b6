"""Gaussian splats as SPZ, Niantic's compressed splat format (what splat tools exchange; Spark,
the web renderer the viewer uses, reads it).

The Gaussians are :func:`pointcloud.splat.to_splat`'s, one per point. The layout follows the
format's reference implementation (github.com/nianticlabs/spz, ``load-spz.cc``), version 3: a
gzip stream of a 16-byte header (little endian: uint32 magic ``0x5053474e`` "NGSP", uint32
version, uint32 numPoints, uint8 shDegree, uint8 fractionalBits, uint8 flags, uint8 reserved)
and then, attribute by attribute for all points:

============  =======  ===================================================================
block         bytes    encoding
============  =======  ===================================================================
positions     9        x, y, z as 24-bit signed fixed point, ``fractionalBits`` of fraction
alphas        1        opacity, 0..255
colours       3        the degree-0 SH coefficient ``f = (c - 0.5) / SH_C0`` as
                       ``round(f * 0.15 * 255 + 127.5)``
scales        3        ``round((ln(sigma) + 10) * 16)``
rotations     4        "smallest three": the index of the largest quaternion component (2
                       bits) and the other three as a sign bit and 9 bits of ``|q| / sqrt(1/2)``
============  =======  ===================================================================

No spherical harmonics beyond degree 0 (shDegree 0): the colours are the photo's. Positions are
in SPZ's own frame (right, up, back: three.js's, and pointcloud-lib's), so no axis is flipped.

Why the project's own writer: the ``spz`` package on PyPI (0.0.1, 2025) is a source-only Rust
build (maturin, crates.io at install time) with no wheels, which an offline install cannot build;
the layout is 60 lines of numpy.
"""

from __future__ import annotations

import gzip
import math

import numpy as np

from pointcloud.cloud import PointCloud
from pointcloud.splat import SH_C0, _gaussians

MAGIC = 0x5053474E
VERSION = 3
HEADER = np.dtype([("magic", "<u4"), ("version", "<u4"), ("points", "<u4"), ("sh_degree", "u1"),
                   ("fractional_bits", "u1"), ("flags", "u1"), ("reserved", "u1")])
assert HEADER.itemsize == 16

FRACTIONAL_BITS = 12
"""The reference writer's 1/4096 m (0.24 mm) position step; fewer bits only for a scene wider
than the 24-bit range (+-2048 m at 12 bits) allows."""

COLOR_SCALE = 0.15
"""The reference's scale of the DC coefficient: one colour byte is SH_C0 / (0.15 * 255) of the
0..1 colour, 1.88 of 255, so a decoded colour is within 0.94 of 255 of the original."""

_SQRT1_2 = math.sqrt(0.5)
_ROTATION_MASK = (1 << 9) - 1


def fractional_bits_for(positions: np.ndarray) -> int:
    """The most fractional bits, up to :data:`FRACTIONAL_BITS`, whose 24-bit range holds every
    coordinate."""
    extent = float(np.abs(positions).max()) if positions.size else 0.0
    bits = FRACTIONAL_BITS
    while bits > 0 and round(extent * (1 << bits)) > (1 << 23) - 1:
        bits -= 1
    if round(extent * (1 << bits)) > (1 << 23) - 1:
        raise ValueError(f"a coordinate of {extent:g} m is beyond SPZ's 24-bit range")
    return bits


def to_spz(cloud: PointCloud, angular_step: float, opacity: np.ndarray | None = None) -> bytes:
    """The cloud's Gaussians (the same as :func:`pointcloud.splat.to_splat` makes from the same
    arguments) as SPZ bytes, version 3, degree-0 colour."""
    scale, alpha, rotation = _gaussians(cloud, angular_step, opacity)
    count = cloud.count
    bits = fractional_bits_for(cloud.positions)
    header = np.zeros(1, HEADER)
    header[0] = (MAGIC, VERSION, count, 0, bits, 0, 0)

    fixed = np.rint(cloud.positions.astype(np.float64) * (1 << bits)).astype("<i4")
    positions = fixed.view(np.uint8).reshape(count, 3, 4)[:, :, :3]  # low 3 bytes, two's compl.
    f_dc = (cloud.colors / np.float32(255) - np.float32(0.5)) / np.float32(SH_C0)
    colors = _to_uint8(f_dc * np.float32(COLOR_SCALE * 255) + np.float32(127.5))
    with np.errstate(divide="ignore"):
        scales = _to_uint8((np.log(scale) + np.float32(10)) * np.float32(16))
    body = b"".join(np.ascontiguousarray(block).tobytes() for block in (
        header, positions, alpha, colors, scales, _smallest_three(rotation)))
    # mtime=0: the same cloud always gives the same bytes (cacheable, comparable).
    return gzip.compress(body, compresslevel=6, mtime=0)


def _to_uint8(values: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


def _smallest_three(wxyz: np.ndarray) -> np.ndarray:
    """(N, 4) uint8: the reference's packing of unit quaternions, components in x, y, z, w order."""
    q = wxyz[:, [1, 2, 3, 0]].astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    largest = np.abs(q).argmax(axis=1)
    # q and -q are one rotation: make the largest component positive, then drop it.
    sign = np.where(q[np.arange(len(q)), largest] < 0, np.float32(-1), np.float32(1))
    q *= sign[:, None]
    packed = largest.astype(np.uint32)
    for axis in range(4):
        keep = largest != axis
        negative = (q[:, axis] < 0).astype(np.uint32)
        magnitude = np.floor(_ROTATION_MASK * np.abs(q[:, axis]) / np.float32(_SQRT1_2)
                             + np.float32(0.5)).astype(np.uint32)
        packed = np.where(keep, (packed << 10) | (negative << 9) | magnitude, packed)
    return packed.astype("<u4").view(np.uint8).reshape(-1, 4)

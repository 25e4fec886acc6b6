"""SPZ from the splat Gaussians, read back by a reader written here from the format's reference
description (github.com/nianticlabs/spz: README and load-spz.cc), not from the writer's code."""

from __future__ import annotations

import gzip
import math
import struct
from dataclasses import dataclass

import numpy as np
import pytest

from pointcloud.splat import decode as decode_splat
from pointcloud.splat import to_splat
from pointcloud.spz import fractional_bits_for, to_spz


@dataclass(frozen=True)
class Splats:
    version: int
    fractional_bits: int
    positions: np.ndarray  # (N, 3) metres
    alphas: np.ndarray  # (N,) 0..255
    colors: np.ndarray  # (N, 3) 0..1
    scales: np.ndarray  # (N, 3) metres
    rotations: np.ndarray  # (N, 4) w, x, y, z


def read_spz(data: bytes) -> Splats:
    raw = gzip.decompress(data)
    magic, version, count, sh_degree, bits, flags, reserved = struct.unpack_from("<IIIBBBB", raw)
    assert magic == 0x5053474E and version in (2, 3) and sh_degree == 0 and flags == 0
    assert reserved == 0
    rotation_bytes = 4 if version == 3 else 3
    sizes = {"positions": 9, "alphas": 1, "colors": 3, "scales": 3, "rotations": rotation_bytes}
    assert len(raw) == 16 + count * sum(sizes.values())
    block, offset = {}, 16
    for name, size in sizes.items():
        block[name] = np.frombuffer(raw, np.uint8, count * size, offset).reshape(count, size)
        offset += count * size

    b = block["positions"].reshape(count, 3, 3).astype(np.int32)
    fixed = b[..., 0] | (b[..., 1] << 8) | (b[..., 2] << 16)
    fixed = np.where(fixed & 0x800000, fixed - (1 << 24), fixed)  # 24-bit two's complement
    positions = fixed / 2.0**bits
    dc = (block["colors"] / 255.0 - 0.5) / 0.15
    colors = dc * 0.28209479177387814 + 0.5
    scales = np.exp(block["scales"] / 16.0 - 10.0)
    rotations = np.array([_unpack_rotation(r) for r in block["rotations"]]).reshape(count, 4)
    return Splats(version, bits, positions, block["alphas"][:, 0], colors, scales, rotations)


def _unpack_rotation(r: np.ndarray) -> list[float]:
    """Version 3's smallest three, as load-spz.cc unpacks them; returned as w, x, y, z."""
    comp = int(r[0]) | int(r[1]) << 8 | int(r[2]) << 16 | int(r[3]) << 24
    largest = comp >> 30
    q = [0.0] * 4  # x, y, z, w
    for i in (3, 2, 1, 0):
        if i == largest:
            continue
        magnitude, negative = comp & 511, (comp >> 9) & 1
        comp >>= 10
        q[i] = math.sqrt(0.5) * magnitude / 511 * (-1 if negative else 1)
    q[largest] = math.sqrt(max(0.0, 1 - sum(v * v for v in q)))
    return [q[3], q[0], q[1], q[2]]


def test_spz_decodes_back_to_the_splat_gaussians(make_cloud) -> None:
    cloud = make_cloud(2000, seed=11)
    opacity = np.random.default_rng(1).integers(0, 256, cloud.count).astype(np.uint8)
    data = to_spz(cloud, angular_step=0.002, opacity=opacity)
    splats = read_spz(data)
    reference = decode_splat(to_splat(cloud, angular_step=0.002, opacity=opacity))

    assert splats.version == 3 and len(splats.positions) == cloud.count
    step = 2.0 ** -splats.fractional_bits
    assert np.abs(splats.positions - cloud.positions).max() <= step / 2 + 1e-9
    # One colour byte is SH_C0 / (0.15 * 255) of the 0..1 colour; rounding keeps half of it.
    assert np.abs(splats.colors * 255 - cloud.colors).max() <= 1.0
    np.testing.assert_array_equal(splats.alphas, opacity)
    # Scales: a log step of 1/16, half of it after rounding (above the format's floor, e^-10 m).
    scale = reference["scale"].astype(np.float64)
    above_floor = scale > math.exp(-10)
    ratio = splats.scales[above_floor] / scale[above_floor]
    assert np.abs(np.log(ratio)).max() <= 1 / 32 + 1e-6
    # Rotations: the same discs (q and -q are one rotation), to 9 bits a component.
    expected = (reference["rotation"].astype(np.float64) - 128) / 128
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    dots = np.abs((splats.rotations * expected).sum(axis=1))
    assert dots.min() > 0.999


def test_bytes_per_splat_beside_the_splat_layout(make_cloud) -> None:
    cloud = make_cloud(20_000, seed=5)
    spz = to_spz(cloud, angular_step=0.002)
    # 20 bytes a point before gzip; less after it (random positions compress poorly).
    per_splat = len(spz) / cloud.count
    print(f"\nSPZ: {per_splat:.1f} bytes a splat (random cloud); .splat: 32")
    assert per_splat < 20.5


def test_the_same_cloud_gives_the_same_bytes(make_cloud, empty_cloud) -> None:
    cloud = make_cloud(100, seed=2)
    assert to_spz(cloud, 0.002) == to_spz(cloud, 0.002)
    empty = read_spz(to_spz(empty_cloud, 0.002))
    assert len(empty.positions) == 0


def test_wide_scenes_trade_fraction_bits_for_range() -> None:
    assert fractional_bits_for(np.array([[1.0, -2.0, -2047.0]])) == 12
    assert fractional_bits_for(np.array([[0.0, 0.0, -5000.0]])) == 10
    with pytest.raises(ValueError, match="24-bit range"):
        fractional_bits_for(np.array([[0.0, 0.0, 1e7]]))

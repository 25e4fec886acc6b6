"""What every PCLD writer and reader shares (spec: FORMAT.md): the prefix, the JSON header's
fixed keys, building and checking it, the uint16 quantisation of positions, and the buffer whose
blocks are filled in place.

Below the codecs that use it: ``codec`` (version 1, and :func:`~pointcloud.codec.decode` of both
versions), ``pack`` (projection straight into a version 1 buffer) and ``grid`` (version 2).
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Mapping
from typing import Any

import numpy as np

from pointcloud.categories import CATEGORY_NAMES, CATEGORY_PALETTE

MAGIC = b"PCLD"
FORMAT_VERSION = 1
GRID_VERSION = 2
"""The grid variant (FORMAT.md, "Version 2: the grid variant"); :func:`pointcloud.codec.decode`
reads both."""

# Top-level header keys the format defines: `extra_header` may not set them.
HEADER_KEYS = frozenset(
    (
        "count",
        "mode",
        "id",
        "bounds",
        "categories",
        "palette",
        "attributes",
        "metadata",
        "camera",
        "grid",
        "depth",
        "images",
    )
)
PREFIX = struct.Struct("<4sII")
PREFIX_SIZE = PREFIX.size

QUANTIZATION_LEVELS = 65535
"""uint16 positions: ``p = min + q * step`` per axis, with ``step = (max - min) / 65535``."""

# Points per block when (de)quantising: flat blocks against per-axis factors tiled to the block
# length keep numpy's loops contiguous (an (N, 3) by (3,) broadcast runs an inner loop of
# length 3), and the block temporaries small enough to stay in cache.
_BLOCK_POINTS = 1 << 14


class BufferWriter:
    """A PCLD buffer whose blocks are filled in place before the header is written.

    The header's bounds (and quantisation) are only known once the positions are, yet the
    header comes first: so room is reserved for the widest numbers JSON can spell, and the
    actual header is padded with spaces to fill it. The buffer is numpy memory: large numpy
    allocations are backed by transparent huge pages where the kernel offers them, which makes
    the first touch of a fresh buffer several times cheaper than for ``bytes``/``bytearray``
    (4 KiB pages).

    Fill ``positions`` (float32, or uint16 steps when ``quantized``: see :func:`quantize`),
    ``colors`` and ``segments``, then call :meth:`finish`.
    """

    def __init__(
        self,
        count: int,
        *,
        mode: str,
        cloud_id: str,
        metadata: dict[str, Any] | None = None,
        quantized: bool = False,
        extra: dict[str, Any] | None = None,
    ) -> None:
        check_labels(mode, cloud_id, metadata)
        self._fields = (count, mode, cloud_id, metadata, extra)
        self.quantized = quantized
        widest = np.full(3, _WIDEST_FLOAT, dtype=np.float64)
        quantization = {"min": widest.tolist(), "step": widest.tolist()} if quantized else None
        header = build_header(count, mode, cloud_id, widest, widest, metadata, quantization, extra)
        self._header_size = len(header)
        body = PREFIX_SIZE + self._header_size
        position_size = (6 if quantized else 12) * count
        self._buffer = np.empty(body + position_size + 4 * count, dtype=np.uint8)
        positions = self._buffer[body : body + position_size]
        self.positions = positions.view("<u2" if quantized else "<f4").reshape(count, 3)
        colors_end = body + position_size + 3 * count
        self.colors = self._buffer[body + position_size : colors_end].reshape(count, 3)
        self.segments = self._buffer[colors_end:]

    def finish(self, lo: np.ndarray, hi: np.ndarray, step: np.ndarray | None = None) -> memoryview:
        """Write the prefix and the header for these bounds (and the quantisation ``step``
        the positions were stored with); the finished, read-only buffer."""
        if not (np.isfinite(lo).all() and np.isfinite(hi).all()):
            raise ValueError("positions must all be finite (found NaN or infinity)")
        if (step is not None) != self.quantized:
            raise ValueError("finish() takes the quantisation step exactly when quantized")
        count, mode, cloud_id, metadata, extra = self._fields
        quantization = None if step is None else {"min": lo.tolist(), "step": step.tolist()}
        header = build_header(count, mode, cloud_id, lo, hi, metadata, quantization, extra)
        if len(header) > self._header_size:  # only if the caller grew metadata meanwhile
            raise ValueError("metadata changed while the cloud was being packed")
        header += b" " * (self._header_size - len(header))
        PREFIX.pack_into(self._buffer, 0, MAGIC, FORMAT_VERSION, len(header))
        self._buffer[PREFIX_SIZE : PREFIX_SIZE + len(header)] = np.frombuffer(header, np.uint8)
        return memoryview(self._buffer).toreadonly()


# The longest repr a float64 can have (24 characters), so any float32 bound fits in its place.
_WIDEST_FLOAT = -2.2250738585072014e-308


def check_labels(mode: Any, cloud_id: Any, metadata: Any) -> None:
    if not isinstance(mode, str) or not mode:
        raise ValueError(f"mode must be a non-empty string, got {mode!r}")
    if not isinstance(cloud_id, str):
        raise ValueError(f"cloud_id must be a string, got {type(cloud_id).__name__}")
    if metadata is not None and not isinstance(metadata, dict):
        raise ValueError(f"metadata must be a dict or None, got {type(metadata).__name__}")


def header_extras(
    camera: Mapping[str, Any] | None, extra_header: Mapping[str, Any] | None
) -> dict[str, Any]:
    """The header keys beyond the fixed ones: ``camera`` and the caller's ``extra_header``
    (which may not redefine a key of the format)."""
    extra: dict[str, Any] = {}
    if camera is not None:
        if not isinstance(camera, Mapping):
            raise ValueError(f"camera must be a mapping or None, got {type(camera).__name__}")
        extra["camera"] = dict(camera)
    if extra_header is not None:
        if not isinstance(extra_header, Mapping):
            raise ValueError(
                f"extra_header must be a mapping or None, got {type(extra_header).__name__}"
            )
        for key in extra_header:
            if not isinstance(key, str):
                raise ValueError(f"extra_header keys must be strings, got {key!r}")
            if key in HEADER_KEYS:
                raise ValueError(
                    f"extra_header key '{key}' is defined by the PCLD format; it cannot be "
                    "set through extra_header"
                )
        extra.update(extra_header)
    return extra


def dump_header(header: dict[str, Any]) -> bytes:
    """Strict JSON, UTF-8, padded with spaces to a multiple of 4 bytes."""
    try:
        text = json.dumps(
            header,
            ensure_ascii=False,
            allow_nan=False,
            separators=(",", ":"),
            default=_json_default,
        )
        raw = text.encode("utf-8")
    except (TypeError, ValueError) as exc:  # UnicodeEncodeError is a ValueError
        raise ValueError(f"metadata is not JSON-serialisable: {exc}") from exc
    return raw + b" " * (-len(raw) % 4)


def build_header(
    count: int,
    mode: str,
    cloud_id: str,
    lo: np.ndarray,
    hi: np.ndarray,
    metadata: dict[str, Any] | None,
    quantization: dict[str, list[float]] | None,
    extra: dict[str, Any] | None = None,
) -> bytes:
    """The JSON header, UTF-8, padded with spaces to a multiple of 4 bytes."""
    position: dict[str, Any] = {"name": "position", "type": "float32", "components": 3}
    position_size = 12 * count
    if quantization is not None:
        position.update(type="uint16", quantization=quantization)
        position_size = 6 * count
    attributes = [
        {**position, "offset": 0, "length": position_size},
        {"name": "color", "type": "uint8", "components": 3},
        {"name": "segment", "type": "uint8", "components": 1},
    ]
    attributes[1].update(offset=position_size, length=3 * count)
    attributes[2].update(offset=position_size + 3 * count, length=count)
    header = {
        "count": count,
        "mode": mode,
        "id": cloud_id,
        "bounds": {"min": [float(v) for v in lo], "max": [float(v) for v in hi]},
        "categories": list(CATEGORY_NAMES),
        "palette": CATEGORY_PALETTE.tolist(),
        "attributes": attributes,
        "metadata": metadata or {},
        **(extra or {}),
    }
    return dump_header(header)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


def quantization_step(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """float32 (3,) step between uint16 levels for positions within [lo, hi]."""
    extent = hi.astype(np.float64) - lo.astype(np.float64)
    if extent.max() > np.finfo(np.float32).max:
        raise ValueError(
            f"positions span {extent.max():.3g} on one axis: too wide to quantise in float32"
        )
    exact = extent / QUANTIZATION_LEVELS
    step = exact.astype(np.float32)
    # Round the step up, never down: then (max - min) / step <= 65535 and no point is clamped
    # beyond half a step. (Rounding down matters for subnormal extents, where float32 has a
    # poor relative precision.)
    return np.where(step < exact, np.nextafter(step, np.float32(np.inf)), step)


def quantize(
    positions: np.ndarray, lo: np.ndarray, step: np.ndarray, out: np.ndarray | None = None
) -> np.ndarray:
    """uint16 (N, 3) steps from ``lo``, rounded to nearest: the error is at most step / 2.

    float64 arithmetic, so that the subtraction and division add no error of their own (in
    float32 they would add up to about 1 % of a step on a cloud far from the origin).
    """
    lo64, step64 = lo.astype(np.float64), step.astype(np.float64)
    inverse = np.divide(1.0, step64, out=np.zeros(3), where=step64 > 0)
    lo_tiled, inverse_tiled = np.tile(lo64, _BLOCK_POINTS), np.tile(inverse, _BLOCK_POINTS)
    flat = np.ascontiguousarray(positions).reshape(-1)
    if out is None:
        out = np.empty((flat.size // 3, 3), np.uint16)
    flat_out = out.reshape(-1)
    scratch = np.empty(min(flat.size, lo_tiled.size), np.float64)
    for start in range(0, flat.size, lo_tiled.size):
        stop = min(start + lo_tiled.size, flat.size)
        width = stop - start
        steps = np.subtract(flat[start:stop], lo_tiled[:width], out=scratch[:width])
        steps *= inverse_tiled[:width]
        np.rint(steps, out=steps)
        # float32 rounding of the step can put the maximum a hair past level 65535.
        np.clip(steps, 0, QUANTIZATION_LEVELS, out=steps)
        flat_out[start:stop] = steps
    return out


def dequantize(steps: np.ndarray, lo: np.ndarray, step: np.ndarray) -> np.ndarray:
    # float32 multiply then add, in that order: js/pcld.js does the same with Math.fround, so
    # both decoders produce bit-identical positions.
    lo_tiled, step_tiled = np.tile(lo, _BLOCK_POINTS), np.tile(step, _BLOCK_POINTS)
    flat_steps = steps.reshape(-1)
    out = np.empty(flat_steps.size, np.float32)
    for start in range(0, flat_steps.size, lo_tiled.size):
        stop = min(start + lo_tiled.size, flat_steps.size)
        width = stop - start
        np.multiply(flat_steps[start:stop], step_tiled[:width], out=out[start:stop])
        out[start:stop] += lo_tiled[:width]
    return out.reshape(-1, 3)


def is_count(value: Any) -> bool:
    """A non-negative integer as JSON carries it: 3 and 3.0 alike (JavaScript cannot tell)."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return value >= 0
    return isinstance(value, float) and value.is_integer() and value >= 0


def is_vector(value: Any) -> bool:
    return (
        isinstance(value, list)
        and len(value) == 3
        and all(
            isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
            for v in value
        )
    )


def require(header: dict[str, Any], name: str) -> Any:
    if name not in header:
        raise ValueError(f"header field '{name}' is missing")
    return header[name]


def check_header_fields(header: dict[str, Any], *, attributes: bool = True) -> int:
    count = require(header, "count")
    if not is_count(count):
        raise ValueError("header field 'count' must be a non-negative integer")
    for name in ("mode", "id"):
        if not isinstance(require(header, name), str):
            raise ValueError(f"header field '{name}' must be a string")
    bounds = require(header, "bounds")
    if not (
        isinstance(bounds, dict) and is_vector(bounds.get("min")) and is_vector(bounds.get("max"))
    ):
        raise ValueError(
            'header field \'bounds\' must be {"min": [x, y, z], "max": [x, y, z]} of finite numbers'
        )
    categories = require(header, "categories")
    if not (
        isinstance(categories, list) and categories and all(isinstance(c, str) for c in categories)
    ):
        raise ValueError("header field 'categories' must be a non-empty list of names")
    palette = require(header, "palette")
    if not (
        isinstance(palette, list)
        and len(palette) == len(categories)
        and all(
            isinstance(rgb, list) and len(rgb) == 3 and all(is_count(c) and c <= 255 for c in rgb)
            for rgb in palette
        )
    ):
        raise ValueError("header field 'palette' must hold one [r, g, b] (0..255) per category")
    if attributes and not isinstance(require(header, "attributes"), list):
        raise ValueError("header field 'attributes' must be a list")
    return int(count)

"""The PCLD binary format, version 1: encoder and validating decoder (spec: FORMAT.md).

Layout: ``PCLD`` | uint32 LE version | uint32 LE header length H | H bytes of UTF-8 JSON (padded
with spaces to a multiple of 4) | attribute blocks (position first, so it is 4-byte aligned).

js/pcld.js mirrors :func:`decode` check for check and message for message: keep them in step.
What the writers and readers of both versions share (prefix, header, quantisation) is in
``pcld``; :func:`decode` hands version 2 buffers to ``grid``.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping
from typing import Any

import numpy as np

from pointcloud.categories import CATEGORY_NAMES
from pointcloud.cloud import PointCloud
from pointcloud.grid import decode_grid
from pointcloud.pcld import (
    FORMAT_VERSION,
    GRID_VERSION,
    HEADER_KEYS,
    MAGIC,
    PREFIX,
    PREFIX_SIZE,
    QUANTIZATION_LEVELS,
    BufferWriter,
    build_header,
    check_header_fields,
    check_labels,
    dequantize,
    header_extras,
    is_count,
    is_vector,
    quantization_step,
    quantize,
)

# The format's names, importable from here as before the shared pieces moved to pcld.py.
__all__ = [
    "FORMAT_VERSION",
    "GRID_VERSION",
    "HEADER_KEYS",
    "MAGIC",
    "PREFIX_SIZE",
    "QUANTIZATION_LEVELS",
    "BufferWriter",
    "decode",
    "encode",
    "header_extras",
    "quantization_step",
    "quantize",
]

# (name, accepted types, components) in block order. Position leads so that it sits at a
# 4-byte aligned offset right after the padded header.
_ATTRIBUTES = (
    ("position", ("float32", "uint16"), 3),
    ("color", ("uint8",), 3),
    ("segment", ("uint8",), 1),
)
_ITEM_SIZE = {"float32": 4, "uint16": 2, "uint8": 1}
_DTYPE = {"float32": np.dtype("<f4"), "uint16": np.dtype("<u2"), "uint8": np.dtype("u1")}


def encode(
    cloud: PointCloud,
    *,
    mode: str,
    cloud_id: str,
    metadata: dict[str, Any] | None = None,
    quantized: bool = False,
    camera: Mapping[str, Any] | None = None,
    extra_header: Mapping[str, Any] | None = None,
) -> bytes:
    """Serialise ``cloud`` as PCLD v1 bytes.

    ``mode`` names the projection ("planar" or "equirect" by convention) so a viewer knows where
    the camera sits; ``cloud_id`` identifies the cloud; ``metadata`` (any JSON-serialisable
    dict; numpy scalars and arrays are converted) lands under the header's ``metadata`` key.
    ``quantized`` stores positions as uint16 steps between the bounds: 10 bytes a point instead
    of 16, with the error bound given in FORMAT.md. ``camera`` (FORMAT.md, "camera") is the
    camera the cloud was projected with, when the caller knows it (``pack_*`` write it
    themselves); ``extra_header`` adds top-level header keys that the format does not define.
    """
    if not isinstance(cloud, PointCloud):
        raise ValueError(f"cloud must be a PointCloud, got {type(cloud).__name__}")
    check_labels(mode, cloud_id, metadata)

    count = cloud.count
    lo, hi = cloud.bounds()
    if not (np.isfinite(lo).all() and np.isfinite(hi).all()):
        raise ValueError("positions must all be finite (found NaN or infinity)")
    if count and int(cloud.segments.max()) >= len(CATEGORY_NAMES):
        raise ValueError(
            f"segment value {int(cloud.segments.max())} is out of range for "
            f"{len(CATEGORY_NAMES)} categories"
        )

    if quantized:
        step = quantization_step(lo, hi)
        position_block = quantize(cloud.positions, lo, step)
        quantization = {"min": lo.tolist(), "step": step.tolist()}
    else:
        position_block = np.ascontiguousarray(cloud.positions, dtype="<f4")
        quantization = None
    extra = header_extras(camera, extra_header)
    header = build_header(count, mode, cloud_id, lo, hi, metadata, quantization, extra)
    prefix = PREFIX.pack(MAGIC, FORMAT_VERSION, len(header))
    # One copy of each block straight into the result: bytes.join reads numpy arrays through
    # the buffer protocol, so no intermediate bytearray or tobytes() is needed.
    blocks = (np.ascontiguousarray(cloud.colors), np.ascontiguousarray(cloud.segments))
    return b"".join((prefix, header, position_block, *blocks))


def decode(buffer: bytes | bytearray | memoryview) -> PointCloud:
    """Parse and validate a PCLD buffer, version 1 (points) or 2 (grid); every fault raises a
    ValueError that names it.

    Version 1: float positions, colours and segments are zero-copy views of ``buffer``
    (read-only for ``bytes``); quantised positions are dequantised into a new float32 array.
    Version 2: the images are decoded and back-projected into new arrays. ``header`` on the
    result is the whole JSON header.
    """
    try:
        view = memoryview(buffer).cast("B")
    except TypeError as exc:
        raise ValueError(f"buffer must be contiguous bytes: {exc}") from exc
    size = len(view)
    if size < PREFIX_SIZE:
        raise ValueError(f"truncated buffer: {size} bytes, shorter than the 12-byte prefix")
    magic, version, header_length = PREFIX.unpack_from(view)
    if magic != MAGIC:
        raise ValueError(f"bad magic {magic.hex()}: expected {MAGIC.hex()} ('PCLD')")
    if version not in (FORMAT_VERSION, GRID_VERSION):
        raise ValueError(f"unknown version {version}: this decoder reads versions 1 and 2")
    if header_length % 4:
        raise ValueError(f"header length {header_length} is not a multiple of 4")
    body_start = PREFIX_SIZE + header_length
    if body_start > size:
        raise ValueError(
            f"truncated buffer: header length {header_length} runs past the end of "
            f"the {size}-byte buffer"
        )
    header = _parse_header(view[PREFIX_SIZE:body_start])
    if version == GRID_VERSION:
        return decode_grid(header, view[body_start:])
    count = check_header_fields(header)
    blocks = _check_attributes(header["attributes"], count, size - body_start)

    def block(name: str, components: int) -> np.ndarray:
        attribute = blocks[name]
        array = np.frombuffer(
            view,
            dtype=_DTYPE[attribute["type"]],
            count=count * components,
            offset=body_start + int(attribute["offset"]),
        )
        return array.reshape((count, components) if components > 1 else (count,))

    position = blocks["position"]
    if position["type"] == "uint16":
        lo, step = _check_quantization(position)
        positions = dequantize(block("position", 3), lo, step)
        positions.flags.writeable = False
    else:
        positions = block("position", 3)
    colors = block("color", 3)
    segments = block("segment", 1)
    categories = len(header["categories"])
    if count and int(segments.max()) >= categories:
        raise ValueError(
            f"segment value {int(segments.max())} is out of range for {categories} categories"
        )
    return PointCloud(positions, colors, segments, header=header)


# --- encoding helpers -----------------------------------------------------------------------


# --- decoding helpers -----------------------------------------------------------------------


def _parse_header(raw: memoryview) -> dict[str, Any]:
    try:
        header = json.loads(bytes(raw).decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, json.JSONDecodeError, ValueError) as exc:
        raise ValueError(f"invalid JSON header: {exc}") from exc
    if not isinstance(header, dict):
        raise ValueError("invalid JSON header: not an object")
    return header


def _reject_constant(name: str) -> None:
    # Python's json accepts NaN and Infinity; JSON (and the browser's JSON.parse) does not.
    raise ValueError(f"{name} is not valid JSON")


def _check_attributes(entries: list[Any], count: int, body_size: int) -> dict[str, dict[str, Any]]:
    """Check every attribute against the count and the bytes present; name -> entry."""
    expected = {name: (types, components) for name, types, components in _ATTRIBUTES}
    found: dict[str, dict[str, Any]] = {}
    for index, entry in enumerate(entries):
        if not (
            isinstance(entry, dict)
            and isinstance(entry.get("name"), str)
            and isinstance(entry.get("type"), str)
            and all(is_count(entry.get(key)) for key in ("components", "offset", "length"))
        ):
            raise ValueError(
                f"attribute entry {index} must be an object with name, type, "
                "and non-negative integer components, offset and length"
            )
        name = entry["name"]
        if name not in expected:
            raise ValueError(f"unknown attribute '{name}'")
        if name in found:
            raise ValueError(f"attribute '{name}' appears twice")
        types, components = expected[name]
        kind, offset, length = entry["type"], int(entry["offset"]), int(entry["length"])
        if kind not in types or entry["components"] != components:
            raise ValueError(
                f"attribute '{name}' must be {' or '.join(types)} x{components}, "
                f"got {kind} x{_number_text(entry['components'])}"
            )
        needed = count * components * _ITEM_SIZE[kind]
        if length != needed:
            raise ValueError(
                f"counts disagree: attribute '{name}' holds {length} bytes, "
                f"count {count} needs {needed}"
            )
        if offset % _ITEM_SIZE[kind]:
            raise ValueError(
                f"attribute '{name}' offset {offset} is not a multiple of {_ITEM_SIZE[kind]}"
            )
        if offset + length > body_size:
            raise ValueError(
                f"truncated buffer: attribute '{name}' ends {offset + length} bytes after "
                f"the header, the buffer holds {body_size}"
            )
        found[name] = entry
    for name, _, _ in _ATTRIBUTES:
        if name not in found:
            raise ValueError(f"attribute '{name}' is missing")
    ordered = sorted(found.values(), key=lambda e: int(e["offset"]))
    for first, second in itertools.pairwise(ordered):
        if int(first["offset"]) + int(first["length"]) > int(second["offset"]):
            raise ValueError(f"attributes '{first['name']}' and '{second['name']}' overlap")
    end = max(int(e["offset"]) + int(e["length"]) for e in ordered)
    if body_size > end:
        raise ValueError(f"{body_size - end} trailing bytes after the last attribute")
    return found


def _number_text(value: Any) -> str:
    # JSON numbers print the same in Python and JavaScript only when integral values drop ".0".
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def _check_quantization(position: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    quantization = position.get("quantization")
    if not (
        isinstance(quantization, dict)
        and is_vector(quantization.get("min"))
        and is_vector(quantization.get("step"))
        and all(s >= 0 for s in quantization["step"])
    ):
        raise ValueError(
            "attribute 'position' (uint16) needs quantization "
            '{"min": [x, y, z], "step": [x, y, z]} of finite numbers, steps >= 0'
        )
    return (
        np.array(quantization["min"], dtype=np.float32),
        np.array(quantization["step"], dtype=np.float32),
    )

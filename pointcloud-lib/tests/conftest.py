"""Shared fixtures: small clouds and the catalogue of malformed PCLD buffers (the Python decoder
tests and the JavaScript decoder tests both run every case in it)."""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from pointcloud import PointCloud, encode


def random_cloud(count: int, seed: int = 0, spread: float = 10.0) -> PointCloud:
    rng = np.random.default_rng(seed)
    return PointCloud(
        positions=(rng.normal(0, spread, (count, 3))).astype(np.float32),
        colors=rng.integers(0, 256, (count, 3), dtype=np.uint8),
        segments=rng.integers(0, 6, count, dtype=np.uint8),
    )


@pytest.fixture(scope="session")
def make_cloud() -> Callable[..., PointCloud]:
    return random_cloud


@pytest.fixture(scope="session")
def empty_cloud() -> PointCloud:
    return PointCloud(
        np.zeros((0, 3), np.float32), np.zeros((0, 3), np.uint8), np.zeros(0, np.uint8)
    )


@dataclass(frozen=True)
class Malformed:
    buffer: bytes
    message: str  # the exact ValueError message, or its prefix when `prefix_only`
    prefix_only: bool = False  # JSON parser details differ between Python and JavaScript


def _split(buffer: bytes) -> tuple[dict[str, Any], bytes]:
    (length,) = struct.unpack_from("<I", buffer, 8)
    return json.loads(buffer[12 : 12 + length]), buffer[12 + length :]


def _assemble(
    header: dict[str, Any] | bytes,
    body: bytes,
    *,
    magic: bytes = b"PCLD",
    version: int = 1,
    header_length: int | None = None,
) -> bytes:
    raw = header if isinstance(header, bytes) else _json(header).encode()
    raw += b" " * (-len(raw) % 4)
    length = len(raw) if header_length is None else header_length
    return magic + struct.pack("<II", version, length) + raw + body


def _json(header: dict[str, Any]) -> str:
    return json.dumps(header, separators=(",", ":"))


def _edited(buffer: bytes, edit: Callable[[dict[str, Any]], None]) -> bytes:
    header, body = _split(buffer)
    edit(header)
    return _assemble(header, body)


def _attribute(header: dict[str, Any], name: str) -> dict[str, Any]:
    return next(a for a in header["attributes"] if a["name"] == name)


def malformed_cases() -> dict[str, Malformed]:
    """Every fault the decoders must name: 4 points, float32 (16 bytes a point, body 64)."""
    base = encode(random_cloud(4, seed=1), mode="planar", cloud_id="m")
    quantized = encode(random_cloud(4, seed=1), mode="planar", cloud_id="m", quantized=True)
    header, body = _split(base)
    size = len(base)
    assert _assemble(header, body) == base  # the edits below change only what they name
    header_length = struct.unpack_from("<I", base, 8)[0]

    def set_in(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
        def edit(h: dict[str, Any]) -> None:
            *parents, last = path.split(".")
            target = h
            for key in parents:
                target = (
                    _attribute(target, key)
                    if key in {"position", "color", "segment"}
                    else target[key]
                )
            target[last] = value

        return edit

    def drop(key: str) -> Callable[[dict[str, Any]], None]:
        return lambda h: h.pop(key)

    def bad_segment_body() -> bytes:
        data = bytearray(base)
        data[-1] = 9
        return bytes(data)

    cases = {
        "short prefix": Malformed(
            base[:5], "truncated buffer: 5 bytes, shorter than the 12-byte prefix"
        ),
        "bad magic": Malformed(
            b"PCLX" + base[4:], "bad magic 50434c58: expected 50434c44 ('PCLD')"
        ),
        "unknown version": Malformed(
            _assemble(header, body, version=3),
            "unknown version 3: this decoder reads versions 1 and 2",
        ),
        "header length unaligned": Malformed(
            _assemble(header, body, header_length=header_length + 1),
            f"header length {header_length + 1} is not a multiple of 4",
        ),
        "header length past the end": Malformed(
            _assemble(header, body, header_length=header_length + 256),
            f"truncated buffer: header length {header_length + 256} runs past the end of "
            f"the {size}-byte buffer",
        ),
        "header length cuts the JSON short": Malformed(
            _assemble(header, body, header_length=header_length - 8),
            "invalid JSON header:",
            prefix_only=True,
        ),
        "header not JSON": Malformed(_assemble(b"{count: 4}", body), "invalid JSON header:", True),
        "header not UTF-8": Malformed(
            _assemble(b'{"id": "\xff\xfe"}', body), "invalid JSON header:", True
        ),
        "header holds NaN": Malformed(
            _assemble(_json(header).replace('"min":[', '"min":[NaN,', 1).encode(), body),
            "invalid JSON header:",
            True,
        ),
        "header not an object": Malformed(
            _assemble(b"[1, 2, 3]", body), "invalid JSON header: not an object"
        ),
        "count missing": Malformed(_edited(base, drop("count")), "header field 'count' is missing"),
        "count negative": Malformed(
            _edited(base, set_in("count", -4)),
            "header field 'count' must be a non-negative integer",
        ),
        "count fractional": Malformed(
            _edited(base, set_in("count", 4.5)),
            "header field 'count' must be a non-negative integer",
        ),
        "mode not a string": Malformed(
            _edited(base, set_in("mode", 3)), "header field 'mode' must be a string"
        ),
        "bounds malformed": Malformed(
            _edited(base, set_in("bounds.min", [0, 0])),
            'header field \'bounds\' must be {"min": [x, y, z], "max": [x, y, z]} '
            "of finite numbers",
        ),
        "categories malformed": Malformed(
            _edited(base, set_in("categories", [])),
            "header field 'categories' must be a non-empty list of names",
        ),
        "palette malformed": Malformed(
            _edited(base, set_in("palette", [[0, 0, 300]] * 6)),
            "header field 'palette' must hold one [r, g, b] (0..255) per category",
        ),
        "attributes not a list": Malformed(
            _edited(base, set_in("attributes", {})), "header field 'attributes' must be a list"
        ),
        "attribute entry malformed": Malformed(
            _edited(base, set_in("color.offset", "48")),
            "attribute entry 1 must be an object with name, type, and non-negative integer "
            "components, offset and length",
        ),
        "count disagrees with the attributes": Malformed(
            _edited(base, set_in("count", 5)),
            "counts disagree: attribute 'position' holds 48 bytes, count 5 needs 60",
        ),
        "attribute length lies": Malformed(
            _edited(base, set_in("color.length", 15)),
            "counts disagree: attribute 'color' holds 15 bytes, count 4 needs 12",
        ),
        "attribute type wrong": Malformed(
            _edited(base, set_in("color.type", "float32")),
            "attribute 'color' must be uint8 x3, got float32 x3",
        ),
        "position offset misaligned": Malformed(
            _edited(base, set_in("position.offset", 2)),
            "attribute 'position' offset 2 is not a multiple of 4",
        ),
        "attribute offset past the end": Malformed(
            _edited(base, set_in("segment.offset", 62)),
            "truncated buffer: attribute 'segment' ends 66 bytes after the header, "
            "the buffer holds 64",
        ),
        "attributes overlap": Malformed(
            _edited(base, set_in("color.offset", 40)),
            "attributes 'position' and 'color' overlap",
        ),
        "unknown attribute": Malformed(
            _edited(
                base,
                lambda h: h["attributes"].append(
                    {
                        "name": "normal",
                        "type": "float32",
                        "components": 3,
                        "offset": 64,
                        "length": 0,
                    }
                ),
            ),
            "unknown attribute 'normal'",
        ),
        "attribute twice": Malformed(
            _edited(base, lambda h: h["attributes"].append(dict(_attribute(h, "color")))),
            "attribute 'color' appears twice",
        ),
        "attribute missing": Malformed(
            _edited(base, lambda h: h["attributes"].pop()), "attribute 'segment' is missing"
        ),
        "truncated body": Malformed(
            base[:-1],
            "truncated buffer: attribute 'segment' ends 64 bytes after the header, "
            "the buffer holds 63",
        ),
        "trailing bytes": Malformed(base + b"\0", "1 trailing bytes after the last attribute"),
        "segment out of range": Malformed(
            bad_segment_body(), "segment value 9 is out of range for 6 categories"
        ),
        "quantization missing": Malformed(
            _edited(quantized, lambda h: _attribute(h, "position").pop("quantization")),
            "attribute 'position' (uint16) needs quantization "
            '{"min": [x, y, z], "step": [x, y, z]} of finite numbers, steps >= 0',
        ),
    }
    return cases


@pytest.fixture(scope="session")
def malformed() -> dict[str, Malformed]:
    return malformed_cases()


def grid_inputs(height: int = 12, width: int = 20, holes: bool = True):
    """A small scene for the grid variant: smooth depth with a step, some pixels without."""
    rng = np.random.default_rng(11)
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float32)
    depth = (2.0 + np.sin(cols / 5) + 0.3 * rows / height).astype(np.float32)
    depth[:, width // 2 :] += 3.0
    if holes:
        depth[rng.random(depth.shape) < 0.15] = 0.0
    rgb = np.stack([cols * 12, rows * 20, (cols + rows) * 8], axis=-1).astype(np.uint8)
    categories = rng.integers(0, 6, (height, width), dtype=np.uint8)
    return depth, rgb, categories


def grid_buffer() -> bytes:
    from pointcloud import pack_grid

    depth, rgb, categories = grid_inputs()
    return pack_grid(
        depth, rgb, categories, cloud_id="g", depth_is_metric=True, focal_length_px=25.0
    )


def _grid_image(buffer: bytes, name: str) -> tuple[int, int]:
    header, _ = _split(buffer)
    entry = next(e for e in header["images"] if e["name"] == name)
    return entry["offset"], entry["length"]


def _regrid(buffer: bytes, name: str, image: bytes) -> bytes:
    """The buffer with one of its images replaced (offsets and lengths updated)."""
    header, body = _split(buffer)
    images = {e["name"]: body[e["offset"] : e["offset"] + e["length"]] for e in header["images"]}
    images[name] = image
    offset = 0
    for entry in header["images"]:
        entry["offset"], entry["length"] = offset, len(images[entry["name"]])
        offset += entry["length"]
    return _assemble(header, b"".join(images[e["name"]] for e in header["images"]), version=2)


def _png(pixels: np.ndarray) -> bytes:
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(out, format="PNG")
    return out.getvalue()


def _geometry(buffer: bytes) -> np.ndarray:
    import io

    from PIL import Image

    _header, body = _split(buffer)
    offset, length = _grid_image(buffer, "geometry")
    return np.array(Image.open(io.BytesIO(body[offset : offset + length])).convert("RGB"))


def malformed_grid_cases() -> dict[str, Malformed]:
    """Broken grid (version 2) buffers and the message both decoders give for each."""
    base = grid_buffer()
    header, body = _split(base)
    count = header["count"]

    def edited(edit: Callable[[dict[str, Any]], None]) -> bytes:
        h = json.loads(json.dumps(header))
        edit(h)
        return _assemble(h, body, version=2)

    def set_in(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
        def edit(h: dict[str, Any]) -> None:
            *parents, last = path.split(".")
            target: Any = h
            for key in parents:
                target = target[int(key)] if key.isdigit() else target[key]
            target[int(last) if last.isdigit() else last] = value

        return edit

    geometry = _geometry(base)
    one_less = geometry.copy()
    first_valid = np.argwhere((one_less[..., 0] > 0) | (one_less[..., 1] > 0))[0]
    one_less[tuple(first_valid)] = (0, 0, 0)
    bad_label = geometry.copy()
    bad_label[(*tuple(first_valid), 2)] = 9
    color_offset, color_length = _grid_image(base, "color")
    geometry_offset, geometry_length = _grid_image(base, "geometry")
    corrupt = bytearray(body[geometry_offset : geometry_offset + geometry_length])
    corrupt[40:60] = b"\x00" * 20  # inside the IDAT chunk: the CRC no longer matches

    return {
        "grid truncated": Malformed(
            base[:-7],
            f"truncated buffer: image 'geometry' ends {len(body)} bytes after the "
            f"header, the buffer holds {len(body) - 7}",
        ),
        "grid trailing bytes": Malformed(base + b"\0\0\0", "3 trailing bytes after the last image"),
        "grid camera missing": Malformed(
            edited(lambda h: h.pop("camera")), "header field 'camera' is missing"
        ),
        "grid camera malformed": Malformed(
            edited(set_in("camera.fx", -1)),
            "header field 'camera' must be a pinhole {model, width, height, fx, fy, cx, cy, "
            "stride} or an equirectangular {model, width, height, stride} camera",
        ),
        "grid size disagrees with camera": Malformed(
            edited(set_in("grid.width", 21)),
            "grid 21x12 does not match the camera: 20x12 at stride 1 samples 20x12",
        ),
        "unknown depth encoding": Malformed(
            edited(set_in("depth.encoding", "linear-uint8")),
            "unknown depth encoding 'linear-uint8': this decoder reads 'log-uint16'",
        ),
        "depth range invalid": Malformed(
            edited(set_in("depth.near", 0)),
            "header field 'depth' needs finite near and far, 0 < near <= far",
        ),
        "unknown image": Malformed(
            edited(set_in("images.0.name", "normals")), "unknown image 'normals'"
        ),
        "image codec": Malformed(
            edited(set_in("images.1.codec", "jpeg")),
            "image 'geometry' must be png or webp, got jpeg",
        ),
        "image missing": Malformed(
            _assemble(
                {**header, "images": header["images"][:1]},
                body[color_offset : color_offset + color_length],
                version=2,
            ),
            "image 'geometry' is missing",
        ),
        "images overlap": Malformed(
            edited(set_in("images.1.offset", geometry_offset - 1)),
            "images 'color' and 'geometry' overlap",
        ),
        "image not of its codec": Malformed(
            _regrid(base, "geometry", b"GIF89a" + bytes(64)), "image 'geometry' is not a png file"
        ),
        "image corrupted": Malformed(
            _regrid(base, "geometry", bytes(corrupt)),
            "image 'geometry' could not be decoded as png",
        ),
        "image size mismatch": Malformed(
            _regrid(base, "geometry", _png(geometry[:, :-1].copy())),
            "image 'geometry' is 19x12, the grid is 20x12",
        ),
        "mask disagrees with count": Malformed(
            _regrid(base, "geometry", _png(one_less)),
            f"counts disagree: header count {count}, the depth image holds {count - 1} points",
        ),
        "grid segment out of range": Malformed(
            _regrid(base, "geometry", _png(bad_label)),
            "segment value 9 is out of range for 6 categories",
        ),
    }


@pytest.fixture(scope="session")
def malformed_grid() -> dict[str, Malformed]:
    return malformed_grid_cases()


@pytest.fixture(scope="session")
def make_grid_scene() -> Callable[..., tuple[np.ndarray, np.ndarray, np.ndarray]]:
    return grid_inputs

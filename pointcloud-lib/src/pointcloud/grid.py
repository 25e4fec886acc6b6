"""PCLD version 2, the grid variant (spec: FORMAT.md, "Version 2: the grid variant").

A cloud made from a depth map is an image grid: the camera, the depth, the colour image and the
category map describe every point. So the grid variant sends those instead of points: the
colour image as JPEG, and one lossless "geometry" image whose red and green channels hold a
16-bit log-depth code (0 = no point: the validity mask folded into the depth) and whose blue
channel holds the category. A reader back-projects the grid with the header's camera, in the
same float32 expressions as :func:`pointcloud.project_planar` / :func:`project_equirect`.

Why 8-bit channels and not a 16-bit PNG: a browser decodes images into 8-bit canvases only
(``getImageData``), so the 16-bit code travels as two bytes (measured in FORMAT.md).

js/pcld.js mirrors :func:`decode_grid` check for check and message for message.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

import numpy as np
from PIL import Image

from pointcloud.categories import CATEGORY_NAMES, CATEGORY_PALETTE, LOW_AMBIENT
from pointcloud.cloud import PointCloud
from pointcloud.pack import planar_focal_source
from pointcloud.pcld import (
    GRID_VERSION,
    MAGIC,
    PREFIX,
    check_header_fields,
    check_labels,
    dump_header,
    header_extras,
    is_count,
    require,
)
from pointcloud.projection import (
    Projection,
    _normalized_to_metres,
    _PinholeRays,
    _SphereRays,
    grid_of_cloud,
    pinhole_rays,
    plan_equirect,
    plan_planar,
    sphere_rays,
)

DEPTH_ENCODING = "log-uint16"
DEPTH_LEVELS = 65534
"""Codes 1..65535 spread ln(depth) evenly between the header's near and far; 0 = no point."""
COLOR_CODECS = ("jpeg", "webp")
GEOMETRY_CODECS = ("png", "webp")
DEFAULT_COLOR_QUALITY = 96
"""JPEG quality, with full-resolution chroma (4:4:4): chosen by measurement (FORMAT.md): the
lowest that keeps 38 dB on KITTI's noisy photographs."""
DEFAULT_PNG_LEVEL = 1
"""zlib level of the geometry PNG: level 6 saves about 12 % of its bytes at 3-4 times the time
(measured, FORMAT.md); the encoder's time matters for a 2 MP panorama."""

_SIGNATURES = {
    "jpeg": (b"\xff\xd8\xff",),
    "png": (b"\x89PNG\r\n\x1a\n",),
    "webp": (b"RIFF",),  # then 4 bytes of length and "WEBP": checked below
}
_IMAGES = (("color", ("jpeg", "webp", "png")), ("geometry", GEOMETRY_CODECS))


def pack_grid(
    depth: np.ndarray,
    rgb: np.ndarray,
    categories: np.ndarray | None = None,
    *,
    mode: str = "planar",
    cloud_id: str,
    metadata: dict[str, Any] | None = None,
    extra_header: Mapping[str, Any] | None = None,
    focal_source: str | None = None,
    color_codec: str = "jpeg",
    color_quality: int = DEFAULT_COLOR_QUALITY,
    geometry_codec: str = "png",
    **projection: Any,
) -> bytes:
    """The cloud of :func:`pointcloud.pack_planar` (``mode="planar"``) or
    :func:`pointcloud.pack_equirect` (``mode="equirect"``), same keyword arguments, as a PCLD
    grid buffer (version 2): it decodes to the same points, with each depth within the bound
    FORMAT.md states, at about 1 byte a pixel instead of 16 (10 quantised)."""
    check_labels(mode, cloud_id, metadata)
    if mode == "planar":
        plan = plan_planar(depth, rgb, categories, **projection)
        camera = plan.full_camera(planar_focal_source(focal_source, projection))
    elif mode == "equirect":
        if focal_source is not None:
            raise ValueError("focal_source applies to mode='planar' only")
        plan = plan_equirect(depth, rgb, categories, **projection)
        camera = plan.full_camera(None)
    else:
        raise ValueError(f"mode must be 'planar' or 'equirect', got {mode!r}")
    depth_m = plan.grid
    if not plan.depth_is_metric:
        depth_m = _normalized_to_metres(plan.grid, plan.near_m, plan.far_m, out=None)
    if plan.categories is None:
        labels = np.full(plan.grid.shape, LOW_AMBIENT, np.uint8)
    else:
        labels = plan.categories[:: plan.stride, :: plan.stride]
    grid = replace(
        plan,
        grid=depth_m,
        rgb=plan.rgb[:: plan.stride, :: plan.stride],
        categories=labels,
        depth_is_metric=True,
        stride=1,
    )
    return _write(
        grid,
        camera,
        cloud_id,
        metadata,
        header_extras(None, extra_header),
        color_codec,
        color_quality,
        geometry_codec,
    )


def pack_grid_from_cloud(
    cloud: PointCloud,
    *,
    extra_header: Mapping[str, Any] | None = None,
    color_codec: str = "jpeg",
    color_quality: int = DEFAULT_COLOR_QUALITY,
    geometry_codec: str = "png",
) -> bytes:
    """A decoded PCLD cloud whose header carries its ``camera`` (every ``pack_*`` writes one),
    re-packed as a grid buffer: each point goes back to the pixel it came from. This is how a
    server makes the grid variant of a cloud it stored as version 1."""
    header = cloud.header
    camera = header.get("camera")
    if not isinstance(camera, dict):
        raise ValueError("the cloud's header has no camera: it cannot be put back on its grid")
    model = _check_camera(camera)
    width, height, stride = camera["width"], camera["height"], camera["stride"]
    placed = grid_of_cloud(cloud)
    flat, depth = placed.pixels, placed.depth
    grid_h, grid_w = placed.shape
    if model == "pinhole":
        rays = pinhole_rays(
            width, height, camera["fx"], camera["fy"], camera["cx"], camera["cy"], stride
        )
    else:
        rays = sphere_rays(width, height, stride)
    keep = np.zeros(grid_h * grid_w, bool)
    keep[flat] = True
    if int(np.count_nonzero(keep)) != cloud.count:
        raise ValueError("the cloud's points do not lie on its camera's grid (two share a pixel)")
    depth_grid = np.ones(grid_h * grid_w, np.float32)
    depth_grid[flat] = depth
    rgb = np.zeros((grid_h * grid_w, 3), np.uint8)
    rgb[flat] = cloud.colors
    labels = np.full(grid_h * grid_w, LOW_AMBIENT, np.uint8)
    labels[flat] = cloud.segments
    shape = (grid_h, grid_w)
    plan = Projection(
        header["mode"],
        depth_grid.reshape(shape),
        None if keep.all() else keep.reshape(shape),
        cloud.count,
        rgb.reshape(*shape, 3),
        labels.reshape(shape),
        rays,
        True,
        1.0,
        1.0,
        1,
        {
            k: camera[k]
            for k in camera
            if k not in ("depth_is_metric", "depth_range_m", "focal_source")
        },
    )
    extras = {k: v for k, v in header.items() if k not in _GRID_KEYS and k not in _V1_ONLY}
    extras.update(header_extras(None, extra_header))
    return _write(
        plan,
        camera,
        header["id"],
        header.get("metadata"),
        extras,
        color_codec,
        color_quality,
        geometry_codec,
    )


def depth_table(near: float, far: float) -> np.ndarray:
    """float32 depth for each of the 65536 codes (code 0, no point, maps to NaN)."""
    step = math.log(far / near) / DEPTH_LEVELS
    table = np.empty(DEPTH_LEVELS + 2, np.float32)
    table[0] = np.nan
    table[1:] = near * np.exp(np.arange(DEPTH_LEVELS + 1, dtype=np.float64) * step)
    return table


def relative_error_bound(near: float, far: float) -> float:
    """The largest |decoded / true - 1| of a depth in [near, far] (FORMAT.md)."""
    step = math.log(far / near) / DEPTH_LEVELS
    return math.expm1(0.51 * step) + 2.0**-22


# --- writing --------------------------------------------------------------------------------

_GRID_KEYS = frozenset(
    (
        "count",
        "mode",
        "id",
        "bounds",
        "categories",
        "palette",
        "camera",
        "grid",
        "depth",
        "images",
        "metadata",
    )
)
_V1_ONLY = frozenset(("attributes",))


def _write(
    plan: Projection,
    camera: dict[str, Any],
    cloud_id: str,
    metadata: dict[str, Any] | None,
    extras: dict[str, Any],
    color_codec: str,
    color_quality: int,
    geometry_codec: str,
) -> bytes:
    """``plan``: metric depth on the sampled grid (stride 1), its colours and labels."""
    if color_codec not in COLOR_CODECS:
        raise ValueError(
            f"color_codec must be one of {', '.join(COLOR_CODECS)}, got {color_codec!r}"
        )
    if geometry_codec not in GEOMETRY_CODECS:
        raise ValueError(
            f"geometry_codec must be one of {', '.join(GEOMETRY_CODECS)}, got {geometry_codec!r}"
        )
    if (
        isinstance(color_quality, bool)
        or not isinstance(color_quality, int)
        or not (1 <= color_quality <= 100)
    ):
        raise ValueError(f"color_quality must be an integer in 1..100, got {color_quality!r}")
    depth, keep = plan.grid, plan.keep
    height, width = depth.shape
    # Pillow's encoders release the GIL: the colour image starts at once, the geometry image as
    # soon as its codes exist, and the bounds are worked out beside them (measured, FORMAT.md).
    with ThreadPoolExecutor(2) as pool:
        color_job = pool.submit(
            lambda: _encode_image(_flatten_empty_blocks(plan.rgb, keep), color_codec, color_quality)
        )
        if not plan.count:
            near = far = 1.0
        elif keep is None:
            near, far = float(depth.min()), float(depth.max())
        else:
            near = float(np.min(depth, where=keep, initial=np.inf))
            far = float(np.max(depth, where=keep, initial=-np.inf))
        codes = _depth_codes(depth, keep, near, far)
        geometry = np.empty((height, width, 3), np.uint8)
        pairs = codes.view(np.uint8).reshape(height, width, 2)  # little endian: low byte first
        geometry[..., 0] = pairs[..., 1]
        geometry[..., 1] = pairs[..., 0]
        geometry[..., 2] = plan.categories
        geometry_job = pool.submit(_encode_image, geometry, geometry_codec, None)
        lo, hi = _decoded_extremes(plan.rays, depth_table(near, far)[codes], keep)
        color, geometry_bytes = color_job.result(), geometry_job.result()
    header = {
        "count": plan.count,
        "mode": plan.mode,
        "id": cloud_id,
        "bounds": {"min": [float(v) for v in lo], "max": [float(v) for v in hi]},
        "categories": list(CATEGORY_NAMES),
        "palette": CATEGORY_PALETTE.tolist(),
        "camera": camera,
        "grid": {"width": width, "height": height},
        "depth": {"encoding": DEPTH_ENCODING, "near": near, "far": far},
        "images": [
            {"name": "color", "codec": color_codec, "offset": 0, "length": len(color)},
            {
                "name": "geometry",
                "codec": geometry_codec,
                "offset": len(color),
                "length": len(geometry_bytes),
            },
        ],
        "metadata": metadata or {},
        **extras,
    }
    raw = dump_header(header)
    return b"".join((PREFIX.pack(MAGIC, GRID_VERSION, len(raw)), raw, color, geometry_bytes))


def _depth_codes(depth: np.ndarray, keep: np.ndarray | None, near: float, far: float) -> np.ndarray:
    """uint16 codes: 1 + round(ln(z / near) * 65534 / ln(far / near)); 0 where no point."""
    scale = DEPTH_LEVELS / math.log(far / near) if far > near else 0.0
    safe = depth if keep is None else np.where(keep, depth, np.float32(near))
    # float32 log: its error (a few ulp of ln z, about 1e-6) is 1 % of a code step at most
    # for the widest ranges; FORMAT.md's bound allows for it.
    t = np.multiply(safe, np.float32(1.0 / near))
    np.log(t, out=t)
    t *= np.float32(scale)
    t += np.float32(1.0)
    np.rint(t, out=t)
    np.clip(t, 1, DEPTH_LEVELS + 1, out=t)
    codes = t.astype(np.uint16)
    if keep is not None:
        codes[~keep] = 0
    return codes


def _decoded_extremes(
    rays: _PinholeRays | _SphereRays, depth: np.ndarray, keep: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """The exact extremes of the positions a reader back-projects from ``depth`` (the decoded
    depth grid), without writing them: fl(q * f) is monotonic in q for a fixed factor f, so
    each coordinate's extremes follow from per-column (x, z) and per-row (y) extremes of the
    quantity the projection multiplies (projection.py, "ray geometry"). Writing the 2M
    interleaved positions only to read their extremes cost more than the rest together."""
    sphere = isinstance(rays, _SphereRays)
    # The sphere's x and z are the horizontal distance fl(r * cos(latitude)) times a column
    # factor; the pinhole's are z times one (or -z).
    per_col = depth * rays.cos_lat if sphere else depth
    if keep is None:
        col_lo, col_hi = per_col.min(axis=0), per_col.max(axis=0)
        row_lo, row_hi = depth.min(axis=1), depth.max(axis=1)
    else:
        col_lo = np.min(per_col, axis=0, where=keep, initial=np.inf)
        col_hi = np.max(per_col, axis=0, where=keep, initial=-np.inf)
        row_lo = np.min(depth, axis=1, where=keep, initial=np.inf)
        row_hi = np.max(depth, axis=1, where=keep, initial=-np.inf)
    cols, rows = col_lo <= col_hi, row_lo <= row_hi  # columns and rows with a point
    if not cols.any():
        return np.zeros(3, np.float32), np.zeros(3, np.float32)
    col_lo, col_hi, row_lo, row_hi = col_lo[cols], col_hi[cols], row_lo[rows], row_hi[rows]
    if sphere:
        x_factor, z_factor = rays.sin_lon[0, cols], rays.neg_cos_lon[0, cols]
        y_factor = rays.sin_lat[rows, 0]
        z_values = (col_lo * z_factor, col_hi * z_factor)
    else:
        x_factor, y_factor = rays.x_per_col[0, cols], rays.y_per_row[rows, 0]
        z_values = (-col_lo, -col_hi)
    axes = (
        (col_lo * x_factor, col_hi * x_factor),
        (row_lo * y_factor, row_hi * y_factor),
        z_values,
    )
    lo = np.array([min(v.min() for v in axis) for axis in axes], np.float32)
    hi = np.array([max(v.max() for v in axis) for axis in axes], np.float32)
    return lo, hi


_BLOCK = 8
"""The JPEG block (8 x 8 pixels; with 4:4:4 chroma, also the MCU)."""


def _flatten_empty_blocks(rgb: np.ndarray, keep: np.ndarray | None) -> np.ndarray:
    """``rgb`` with every 8 x 8 block that holds no point painted flat grey: no reader sees
    those pixels, and a flat block costs a JPEG (or WebP) almost nothing. KITTI's sparse LiDAR
    leaves half the blocks empty: this halves its colour bytes, at no loss on any point, since
    JPEG codes each block on its own (FORMAT.md, measured)."""
    if keep is None:
        return rgb
    height, width = keep.shape
    rows, cols = -(-height // _BLOCK), -(-width // _BLOCK)
    padded = np.zeros((rows * _BLOCK, cols * _BLOCK), bool)
    padded[:height, :width] = keep
    occupied = padded.reshape(rows, _BLOCK, cols, _BLOCK).any(axis=(1, 3))
    if occupied.all():
        return rgb
    empty = np.repeat(np.repeat(~occupied, _BLOCK, axis=0), _BLOCK, axis=1)[:height, :width]
    flat = rgb.copy()
    flat[empty] = 128
    return flat


def _encode_image(pixels: np.ndarray, codec: str, quality: int | None) -> bytes:
    out = io.BytesIO()
    image = Image.fromarray(np.ascontiguousarray(pixels), "RGB")
    if codec == "jpeg":
        image.save(out, format="JPEG", quality=quality, subsampling=0)
    elif codec == "png":
        image.save(out, format="PNG", compress_level=DEFAULT_PNG_LEVEL)
    elif quality is None:  # lossless WebP, its fastest method (FORMAT.md: the measurements)
        image.save(out, format="WEBP", lossless=True, method=0, quality=0)
    else:
        image.save(out, format="WEBP", quality=quality, method=0)
    return out.getvalue()


# --- reading --------------------------------------------------------------------------------


def decode_grid(header: dict[str, Any], body: memoryview) -> PointCloud:
    """The body of a version 2 buffer (after the header) -> :class:`PointCloud`."""
    count = check_header_fields(header, attributes=False)
    camera = header.get("camera")
    if camera is None:
        raise ValueError("header field 'camera' is missing")
    model = _check_camera(camera)
    width, height, stride = camera["width"], camera["height"], camera["stride"]
    grid_w, grid_h = -(-width // stride), -(-height // stride)
    grid = require(header, "grid")
    if not (
        isinstance(grid, dict) and _positive(grid.get("width")) and _positive(grid.get("height"))
    ):
        raise ValueError(
            'header field \'grid\' must be {"width": w, "height": h} of positive integers'
        )
    if (grid["width"], grid["height"]) != (grid_w, grid_h):
        raise ValueError(
            f"grid {_n(grid['width'])}x{_n(grid['height'])} does not match the camera: "
            f"{width}x{height} at stride {stride} samples {grid_w}x{grid_h}"
        )
    near, far = _check_depth(require(header, "depth"))
    images = _check_images(require(header, "images"), len(body))

    pixels = {
        name: _decode_image(name, entry, body, grid_w, grid_h) for name, entry in images.items()
    }
    geometry = pixels["geometry"]
    codes = (geometry[..., 0].astype(np.uint16) << 8) | geometry[..., 1]
    valid = codes > 0
    found = int(np.count_nonzero(valid))
    if found != count:
        raise ValueError(
            f"counts disagree: header count {count}, the depth image holds {found} points"
        )
    labels = geometry[..., 2]
    categories = len(header["categories"])
    if count:
        highest = int(labels[valid].max()) if found < valid.size else int(labels.max())
        if highest >= categories:
            raise ValueError(f"segment value {highest} is out of range for {categories} categories")
    rays = (
        pinhole_rays(width, height, camera["fx"], camera["fy"], camera["cx"], camera["cy"], stride)
        if model == "pinhole"
        else sphere_rays(width, height, stride)
    )
    plan = Projection(
        header["mode"],
        depth_table(near, far)[codes],
        None if found == valid.size else valid,
        count,
        pixels["color"],
        labels,
        rays,
        True,
        near,
        far,
        1,
        camera,
    )
    cloud = plan.to_cloud()
    cloud.header = header
    return cloud


def _positive(value: Any) -> bool:
    return is_count(value) and value > 0


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _n(value: Any) -> str:
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def _check_camera(camera: Any) -> str:
    message = (
        "header field 'camera' must be a pinhole {model, width, height, fx, fy, cx, cy, stride} "
        "or an equirectangular {model, width, height, stride} camera"
    )
    if not (
        isinstance(camera, dict)
        and camera.get("model") in ("pinhole", "equirectangular")
        and all(_positive(camera.get(k)) for k in ("width", "height", "stride"))
    ):
        raise ValueError(message)
    if camera["model"] == "pinhole" and not (
        all(_finite(camera.get(k)) for k in ("fx", "fy", "cx", "cy"))
        and camera["fx"] > 0
        and camera["fy"] > 0
    ):
        raise ValueError(message)
    for key in ("width", "height", "stride"):
        camera[key] = int(camera[key])
    return str(camera["model"])


def _check_depth(depth: Any) -> tuple[float, float]:
    if not (isinstance(depth, dict) and isinstance(depth.get("encoding"), str)):
        raise ValueError("header field 'depth' must be an object with an encoding")
    if depth["encoding"] != DEPTH_ENCODING:
        raise ValueError(
            f"unknown depth encoding '{depth['encoding']}': this decoder reads '{DEPTH_ENCODING}'"
        )
    near, far = depth.get("near"), depth.get("far")
    if not (_finite(near) and _finite(far) and 0 < near <= far):
        raise ValueError("header field 'depth' needs finite near and far, 0 < near <= far")
    return float(near), float(far)


def _check_images(entries: Any, body_size: int) -> dict[str, dict[str, Any]]:
    if not isinstance(entries, list):
        raise ValueError("header field 'images' must be a list")
    expected = dict(_IMAGES)
    found: dict[str, dict[str, Any]] = {}
    for index, entry in enumerate(entries):
        if not (
            isinstance(entry, dict)
            and isinstance(entry.get("name"), str)
            and isinstance(entry.get("codec"), str)
            and all(is_count(entry.get(k)) for k in ("offset", "length"))
        ):
            raise ValueError(
                f"image entry {index} must be an object with name, codec, and "
                "non-negative integer offset and length"
            )
        name = entry["name"]
        if name not in expected:
            raise ValueError(f"unknown image '{name}'")
        if name in found:
            raise ValueError(f"image '{name}' appears twice")
        if entry["codec"] not in expected[name]:
            raise ValueError(
                f"image '{name}' must be {' or '.join(expected[name])}, got {entry['codec']}"
            )
        end = int(entry["offset"]) + int(entry["length"])
        if end > body_size:
            raise ValueError(
                f"truncated buffer: image '{name}' ends {end} bytes after the "
                f"header, the buffer holds {body_size}"
            )
        found[name] = entry
    for name, _ in _IMAGES:
        if name not in found:
            raise ValueError(f"image '{name}' is missing")
    first, second = sorted(found.values(), key=lambda e: int(e["offset"]))
    if int(first["offset"]) + int(first["length"]) > int(second["offset"]):
        raise ValueError(f"images '{first['name']}' and '{second['name']}' overlap")
    end = int(second["offset"]) + int(second["length"])
    if body_size > end:
        raise ValueError(f"{body_size - end} trailing bytes after the last image")
    return found


def _decode_image(
    name: str, entry: dict[str, Any], body: memoryview, width: int, height: int
) -> np.ndarray:
    offset, codec = int(entry["offset"]), entry["codec"]
    data = bytes(body[offset : offset + int(entry["length"])])
    if not (data.startswith(_SIGNATURES[codec]) and (codec != "webp" or data[8:12] == b"WEBP")):
        raise ValueError(f"image '{name}' is not a {codec} file")
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            pixels = np.asarray(image.convert("RGB"))
    except (OSError, ValueError, SyntaxError) as exc:
        raise ValueError(f"image '{name}' could not be decoded as {codec}") from exc
    if pixels.shape[:2] != (height, width):
        raise ValueError(
            f"image '{name}' is {pixels.shape[1]}x{pixels.shape[0]}, the grid is {width}x{height}"
        )
    return pixels

"""PNG encodings of a generation's maps. Fast zlib levels: these files are written for every
generation and read rarely, so encoding time matters more than a few percent of size."""

from __future__ import annotations

import io
import math

import numpy as np
from PIL import ExifTags, Image

from pointcloud import CATEGORY_PALETTE


def _png(image: Image.Image, compress_level: int) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=compress_level)
    return buffer.getvalue()


def rgb_png(rgb: np.ndarray, compress_level: int = 1) -> bytes:
    return _png(Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8)), compress_level)


def depth_png(normalized_depth: np.ndarray, compress_level: int = 1) -> bytes:
    """16-bit grayscale of normalised depth (65535 = near, 0 = far), as the services return it."""
    scaled = np.clip(normalized_depth, 0.0, 1.0) * np.float32(65535)
    pixels = np.rint(scaled).astype("<u2")
    return _png(Image.fromarray(pixels), compress_level)  # uint16 -> mode "I;16"


def segments_png(categories: np.ndarray, compress_level: int = 1) -> bytes:
    """A palette PNG: each pixel's index is its category (0..5) and its colour is the category's
    colour in pointcloud's ``CATEGORY_PALETTE``, so the file is both a picture and the labels."""
    image = Image.fromarray(np.ascontiguousarray(categories, dtype=np.uint8))
    image.putpalette(np.asarray(CATEGORY_PALETTE, dtype=np.uint8).ravel().tolist())
    return _png(image, compress_level)


# The 35 mm film frame's diagonal: "35 mm equivalent" focal lengths refer to it.
FILM_DIAGONAL_MM = math.hypot(36.0, 24.0)
# Focal lengths giving a horizontal field of view outside this range are not a camera's.
EXIF_FOV_RANGE_DEG = (5.0, 150.0)
_UNIT_MM = {2: 25.4, 3: 10.0, 4: 1.0, 5: 0.001}  # EXIF FocalPlaneResolutionUnit


def exif_focal_length_px(data: bytes, width: int, height: int) -> float | None:
    """The photo's focal length in pixels of its (decoded, W x H) image from EXIF, or None.

    FocalLengthIn35mmFilm first, converted over the diagonal as Apple's DepthPro reference does
    (f_px = f_35 * hypot(W, H) / hypot(36, 24)); else FocalLength with the sensor's
    FocalPlaneXResolution (pixels per unit of the sensor at ExifImageWidth pixels). Zero,
    negative, unparsable or absurd values (a field of view outside 5-150 degrees) give None:
    the caller falls back silently and records which source it used.
    """
    try:
        with Image.open(io.BytesIO(data)) as image:
            exif = image.getexif().get_ifd(ExifTags.IFD.Exif)
    except Exception:  # a damaged EXIF block is no reason to refuse a decodable photo
        return None
    candidates = []
    f35 = _positive(exif.get(ExifTags.Base.FocalLengthIn35mmFilm))
    if f35 is not None:
        candidates.append(f35 * math.hypot(width, height) / FILM_DIAGONAL_MM)
    focal_mm = _positive(exif.get(ExifTags.Base.FocalLength))
    plane_res = _positive(exif.get(ExifTags.Base.FocalPlaneXResolution))
    unit_mm = _UNIT_MM.get(exif.get(ExifTags.Base.FocalPlaneResolutionUnit, 2))
    if focal_mm is not None and plane_res is not None and unit_mm is not None:
        sensor_side_px = max(_positive(exif.get(ExifTags.Base.ExifImageWidth)) or 0.0,
                             _positive(exif.get(ExifTags.Base.ExifImageHeight)) or 0.0)
        # The sensor's pixels scaled to the image's if the photo was resized since (long sides
        # compared: the decoded image may have been turned upright).
        resized = max(width, height) / sensor_side_px if sensor_side_px else 1.0
        candidates.append(focal_mm * plane_res / unit_mm * resized)
    low, high = EXIF_FOV_RANGE_DEG
    for focal in candidates:
        fov = math.degrees(2.0 * math.atan(width / (2.0 * focal)))
        if low <= fov <= high:
            return focal
    return None


def _positive(value) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    return number if math.isfinite(number) and number > 0 else None

"""PNG encodings of a generation's maps. Fast zlib levels: these files are written for every
generation and read rarely, so encoding time matters more than a few percent of size."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

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

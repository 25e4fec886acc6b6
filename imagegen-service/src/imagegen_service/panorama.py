"""Turning the model's widest image into an exact 2:1 equirectangular panorama that wraps.

The method, in order:

1. **Wrap cross-fade** (``wrap_crossfade``). The last ``band`` columns are cross-faded over the
   first ``band`` columns and then dropped: output column ``x < band`` is
   ``(1 - w) * right[x] + w * left[x]`` with ``w`` rising from 0 to 1 across the band. The output's
   first column is then (almost) the input's column ``W - band`` and its last column the input's
   column ``W - band - 1``: neighbours in the original, so the wrap shows no seam. Inside the
   band the image dissolves from the right edge's content into the left edge's, which is how
   overlapping panorama photos are feathered together. The width shrinks by ``band``.
2. **Exact 2:1** (``fit_2to1``), by one of two documented methods:
   - ``resize`` (default): scale the height to width / 2. The model composed the whole frame
     (sky at the top, floor at the bottom) as the poles of the sphere, so all of it is kept, at
     the cost of a slight vertical squash (1024 -> 864 rows for DALL·E 3's 1792x1024).
   - ``crop``: keep the centre rows (the horizon stays at the centre); the top and bottom rows,
     the most stretched in an equirectangular image, are dropped and pixels keep their aspect.
   An image already wider than 2:1 is always resized (cropping columns would break the wrap).
3. Optionally a resize of the whole image to the size the request asked for (exactly 2:1).

``seam_mad`` measures the wrap: the mean absolute difference (0..255) between the first and the
last column, reported before step 1 and after step 3.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from PIL import Image

Fit = Literal["resize", "crop"]


def seam_mad(rgb: np.ndarray) -> float:
    """Mean absolute difference of the first and last columns of a uint8 [H, W, C] image."""
    first = rgb[:, 0].astype(np.int16)
    last = rgb[:, -1].astype(np.int16)
    return float(np.abs(first - last).mean())


def wrap_crossfade(rgb: np.ndarray, band_px: int) -> np.ndarray:
    """Cross-fade the right edge band over the left one; the result is ``band_px`` narrower."""
    width = rgb.shape[1]
    if not 0 < band_px < width // 2:
        raise ValueError(f"band of {band_px} px does not fit an image {width} px wide")
    left = rgb[:, :band_px].astype(np.float32)
    right = rgb[:, width - band_px :].astype(np.float32)
    # Pixel centres: the weights never reach exactly 0 or 1, so both ends of the band blend.
    weight = ((np.arange(band_px, dtype=np.float32) + 0.5) / band_px)[None, :, None]
    blended = right * (1.0 - weight) + left * weight
    blended = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
    return np.concatenate([blended, rgb[:, band_px : width - band_px]], axis=1)


def _resize(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    if rgb.shape[1] == width and rgb.shape[0] == height:
        return rgb
    image = Image.fromarray(rgb).resize((width, height), Image.Resampling.LANCZOS)
    return np.asarray(image, dtype=np.uint8)


def fit_2to1(rgb: np.ndarray, fit: Fit) -> np.ndarray:
    """Make the image exactly twice as wide as high, keeping its width (see the module doc)."""
    height, width, _ = rgb.shape
    if width % 2:
        # An odd width has no exact half; give up the last column (one pixel of a wide image).
        rgb = rgb[:, : width - 1]
        width -= 1
    target_height = width // 2
    if height == target_height:
        return rgb
    if fit == "crop" and height > target_height:
        top = (height - target_height) // 2
        return np.ascontiguousarray(rgb[top : top + target_height])
    return _resize(rgb, width, target_height)


def make_panorama(
    rgb: np.ndarray,
    *,
    band_px: int,
    fit: Fit,
    output_size: tuple[int, int] | None = None,
) -> np.ndarray:
    """The whole method: wrap cross-fade, exact 2:1, then the requested (2:1) size if any."""
    # A narrow image (e.g. a gateway's small square) gets a proportionally narrow band.
    band_px = min(band_px, max(2, rgb.shape[1] // 8))
    panorama = fit_2to1(wrap_crossfade(rgb, band_px), fit)
    if output_size is not None:
        width, height = output_size
        if width != 2 * height:
            raise ValueError(f"a panorama must be exactly 2:1, not {width}x{height}")
        panorama = _resize(panorama, width, height)
    return panorama

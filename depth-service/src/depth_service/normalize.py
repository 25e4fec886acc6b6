"""Normalized depth: the disparity map rescaled to 0..1 (1 = near, 0 = far), robust to outliers.

    lo, hi = 2nd and 98th percentiles of the finite disparity values
    normalized = clip((disparity - lo) / (hi - lo), 0, 1)

Percentiles rather than min/max because a handful of extreme pixels (a specular highlight, a sky
pixel predicted at infinity, a tile-border artefact) would otherwise squeeze the whole scene into a
narrow band. It is linear in disparity (inverse depth), so near geometry gets the most levels, as a
viewer's eye does. A map without spread (hi == lo) becomes 0.5 everywhere: no relief, not a wall at
either end.
"""

from __future__ import annotations

import numpy as np

LOW_PERCENTILE = 2.0
HIGH_PERCENTILE = 98.0
# Percentiles of a strided sample are as good as of the whole map and much cheaper on 16 MP maps.
MAX_PERCENTILE_SAMPLES = 1_000_000


def normalize_disparity(disparity: np.ndarray) -> np.ndarray:
    flat = disparity.ravel()
    sample = flat[:: max(1, flat.size // MAX_PERCENTILE_SAMPLES)]
    sample = sample[np.isfinite(sample)]
    if sample.size == 0:
        return np.full(disparity.shape, 0.5, dtype=np.float32)
    low, high = np.percentile(sample, [LOW_PERCENTILE, HIGH_PERCENTILE])
    if not high > low:
        return np.full(disparity.shape, 0.5, dtype=np.float32)
    normalized = (disparity.astype(np.float32) - np.float32(low)) / np.float32(high - low)
    normalized = np.nan_to_num(normalized, nan=0.5, posinf=1.0, neginf=0.0)
    return np.clip(normalized, 0.0, 1.0, out=normalized)

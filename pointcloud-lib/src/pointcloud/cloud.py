"""The in-memory point cloud: three parallel arrays, the shape the PCLD format stores."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

# Points per row when reducing an (N, 3) array: numpy reduces an (N, 3) array over axis 0 with
# an inner loop of length 3 (about 50x slower than a contiguous reduction), so the array is
# viewed as (N / _REDUCE_POINTS, 3 * _REDUCE_POINTS) and reduced down its long rows instead.
_REDUCE_POINTS = 1024


@dataclass(eq=False)
class PointCloud:
    """``count`` points: float32 (N, 3) positions, uint8 (N, 3) colours, uint8 (N,) segments.

    Coordinates are metres, right-handed, +Y up, viewer at the origin looking down -Z (three.js).
    ``segments`` holds indices into :data:`pointcloud.CATEGORY_NAMES`. ``header`` is the whole
    JSON header when the cloud came from :func:`pointcloud.decode`, else empty.
    """

    positions: np.ndarray
    colors: np.ndarray
    segments: np.ndarray
    header: dict[str, Any] = field(default_factory=dict)
    # (positions array, min, max) remembered for a read-only positions array only: a read-only
    # array cannot change under the cache, and the identity check catches a reassigned one.
    _bounds_cache: tuple[np.ndarray, np.ndarray, np.ndarray] | None = field(
        default=None, init=False, repr=False
    )

    def __post_init__(self) -> None:
        _check_array("positions", self.positions, np.float32, (3,))
        count = self.positions.shape[0]
        _check_array("colors", self.colors, np.uint8, (3,), count)
        _check_array("segments", self.segments, np.uint8, (), count)

    @property
    def count(self) -> int:
        return int(self.positions.shape[0])

    def __len__(self) -> int:
        return self.count

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-axis (min, max) of the positions as float32 (3,) arrays; zeros for an empty cloud.

        A NaN or infinite coordinate shows up in the bounds (NaN propagates), which is how
        :func:`pointcloud.encode` rejects it without a separate pass over the positions.
        """
        cached = self._bounds_cache
        if cached is not None and cached[0] is self.positions:
            return cached[1].copy(), cached[2].copy()
        lo, hi = _extremes(self.positions)
        self._remember_bounds(lo, hi)
        return lo.copy(), hi.copy()

    def _remember_bounds(self, lo: np.ndarray, hi: np.ndarray) -> None:
        if not self.positions.flags.writeable:
            self._bounds_cache = (self.positions, lo, hi)


def _check_array(
    name: str, array: Any, dtype: type, tail: tuple[int, ...], count: int | None = None
) -> None:
    if not isinstance(array, np.ndarray):
        raise ValueError(f"{name} must be a numpy array, got {type(array).__name__}")
    expected = ("N", *tail)
    if array.dtype != dtype or array.ndim != len(expected) or array.shape[1:] != tail:
        raise ValueError(
            f"{name} must be {np.dtype(dtype).name} with shape {_shape_text(expected)}, "
            f"got {array.dtype.name} with shape {array.shape}"
        )
    if count is not None and array.shape[0] != count:
        raise ValueError(f"{name} has {array.shape[0]} rows but positions has {count}")


def _shape_text(shape: tuple[Any, ...]) -> str:
    return "(" + ", ".join(str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"


def _extremes(positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact per-axis min and max of an (N, 3) float32 array; NaN propagates."""
    if positions.shape[0] == 0:
        return np.zeros(3, np.float32), np.zeros(3, np.float32)
    flat = np.ascontiguousarray(positions)
    head = flat.shape[0] - flat.shape[0] % _REDUCE_POINTS
    los, his = [], []
    if head:
        rows = flat[:head].reshape(-1, 3 * _REDUCE_POINTS)
        los.append(np.minimum.reduce(rows, axis=0).reshape(-1, 3))
        his.append(np.maximum.reduce(rows, axis=0).reshape(-1, 3))
    if head < flat.shape[0]:
        los.append(flat[head:])
        his.append(flat[head:])
    lo = np.minimum.reduce(np.concatenate(los), axis=0)
    hi = np.maximum.reduce(np.concatenate(his), axis=0)
    return lo.astype(np.float32), hi.astype(np.float32)

"""Projection straight into the final PCLD buffer: the orchestrator's per-generation hot path.

``pack_planar(...)`` gives the same bytes as ``encode(project_planar(...), mode="planar", ...)``
(header padding aside) without the intermediate (N, 3) positions array and the copy out of it:
one output allocation, written once.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from pointcloud.codec import BufferWriter, quantization_step, quantize
from pointcloud.projection import Projection, plan_equirect, plan_planar


def pack_planar(
    depth: np.ndarray,
    rgb: np.ndarray,
    categories: np.ndarray | None = None,
    *,
    cloud_id: str,
    metadata: dict[str, Any] | None = None,
    quantized: bool = False,
    extra_header: Mapping[str, Any] | None = None,
    **projection: Any,
) -> memoryview:
    """:func:`pointcloud.project_planar` (same keyword arguments) encoded as PCLD, mode
    "planar". Returns a read-only, contiguous byte memoryview (what Starlette's ``Response``,
    ``Path.write_bytes`` and :func:`pointcloud.decode` take; ``bytes(view)`` copies)."""
    plan = plan_planar(depth, rgb, categories, **projection)
    return _pack(plan, cloud_id, metadata, quantized, extra_header)


def pack_equirect(
    depth: np.ndarray,
    rgb: np.ndarray,
    categories: np.ndarray | None = None,
    *,
    cloud_id: str,
    metadata: dict[str, Any] | None = None,
    quantized: bool = False,
    extra_header: Mapping[str, Any] | None = None,
    **projection: Any,
) -> memoryview:
    """:func:`pointcloud.project_equirect` (same keyword arguments) encoded as PCLD, mode
    "equirect"; returns as :func:`pack_planar` does."""
    plan = plan_equirect(depth, rgb, categories, **projection)
    return _pack(plan, cloud_id, metadata, quantized, extra_header)


def _pack(
    plan: Projection,
    cloud_id: str,
    metadata: dict[str, Any] | None,
    quantized: bool,
    extra_header: Mapping[str, Any] | None,
) -> memoryview:
    writer = BufferWriter(
        plan.count,
        mode=plan.mode,
        cloud_id=cloud_id,
        metadata=metadata,
        quantized=quantized,
        extra_header=extra_header,
    )
    if not quantized:
        lo, hi = plan.write(writer.positions, writer.colors, writer.segments)
        return writer.finish(lo, hi)
    # Quantised positions need the bounds before the first one can be stored: float32 ones go
    # to a scratch array first (12 bytes a point on top of the 10 of the output).
    positions = np.empty((plan.count, 3), np.float32)
    lo, hi = plan.write(positions, writer.colors, writer.segments)
    if not (np.isfinite(lo).all() and np.isfinite(hi).all()):
        raise ValueError("positions must all be finite (found NaN or infinity)")
    step = quantization_step(lo, hi)
    quantize(positions, lo, step, out=writer.positions)
    return writer.finish(lo, hi, step)

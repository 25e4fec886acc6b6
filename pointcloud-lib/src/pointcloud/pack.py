"""Projection straight into the final PCLD buffer: the orchestrator's per-generation hot path.

``pack_planar(...)`` gives the same bytes as ``encode(project_planar(...), mode="planar", ...)``
(header padding aside) without the intermediate (N, 3) positions array and the copy out of it:
one output allocation, written once.
"""

from __future__ import annotations

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
    stats: dict[str, Any] | None = None,
    **projection: Any,
) -> memoryview:
    """:func:`pointcloud.project_planar` (same keyword arguments, ``edge_rtol`` included)
    encoded as PCLD, mode "planar". Returns a read-only, contiguous byte memoryview (what
    Starlette's ``Response``, ``Path.write_bytes`` and :func:`pointcloud.decode` take;
    ``bytes(view)`` copies). A ``stats`` dict, when given, receives ``edges_dropped``: the
    points the edge clean-up removed (the header's count says how many were kept)."""
    plan = plan_planar(depth, rgb, categories, **projection)
    _report(plan, stats)
    return _pack(plan, cloud_id, metadata, quantized)


def pack_equirect(
    depth: np.ndarray,
    rgb: np.ndarray,
    categories: np.ndarray | None = None,
    *,
    cloud_id: str,
    metadata: dict[str, Any] | None = None,
    quantized: bool = False,
    stats: dict[str, Any] | None = None,
    **projection: Any,
) -> memoryview:
    """:func:`pointcloud.project_equirect` (same keyword arguments) encoded as PCLD, mode
    "equirect"; returns and reports as :func:`pack_planar` does."""
    plan = plan_equirect(depth, rgb, categories, **projection)
    _report(plan, stats)
    return _pack(plan, cloud_id, metadata, quantized)


def _report(plan: Projection, stats: dict[str, Any] | None) -> None:
    if stats is not None:
        stats["edges_dropped"] = plan.edges_dropped


def _pack(
    plan: Projection, cloud_id: str, metadata: dict[str, Any] | None, quantized: bool
) -> memoryview:
    writer = BufferWriter(
        plan.count, mode=plan.mode, cloud_id=cloud_id, metadata=metadata, quantized=quantized
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

"""Projection straight into the final PCLD buffer: the orchestrator's per-generation hot path.

``pack_planar(...)`` gives the same bytes as ``encode(project_planar(...), mode="planar", ...)``
(header padding aside) without the intermediate (N, 3) positions array and the copy out of it:
one output allocation, written once.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pointcloud.codec import BufferWriter, encode
from pointcloud.projection import Projection, plan_equirect, plan_planar


def pack_planar(
    depth: np.ndarray,
    rgb: np.ndarray,
    categories: np.ndarray | None = None,
    *,
    cloud_id: str,
    metadata: dict[str, Any] | None = None,
    quantized: bool = False,
    **projection: Any,
) -> memoryview:
    """:func:`pointcloud.project_planar` (same keyword arguments) encoded as PCLD, mode
    "planar". Returns a read-only, contiguous byte memoryview (what Starlette's ``Response``,
    ``Path.write_bytes`` and :func:`pointcloud.decode` take; ``bytes(view)`` copies)."""
    plan = plan_planar(depth, rgb, categories, **projection)
    return _pack(plan, cloud_id, metadata, quantized)


def pack_equirect(
    depth: np.ndarray,
    rgb: np.ndarray,
    categories: np.ndarray | None = None,
    *,
    cloud_id: str,
    metadata: dict[str, Any] | None = None,
    quantized: bool = False,
    **projection: Any,
) -> memoryview:
    """:func:`pointcloud.project_equirect` (same keyword arguments) encoded as PCLD, mode
    "equirect"; returns as :func:`pack_planar` does."""
    plan = plan_equirect(depth, rgb, categories, **projection)
    return _pack(plan, cloud_id, metadata, quantized)


def _pack(
    plan: Projection, cloud_id: str, metadata: dict[str, Any] | None, quantized: bool
) -> memoryview:
    if quantized:
        # Quantised positions need the bounds before the first one can be stored, so they go
        # through a float32 cloud first (the output is 10 bytes a point, not 16).
        cloud = plan.to_cloud()
        return memoryview(
            encode(cloud, mode=plan.mode, cloud_id=cloud_id, metadata=metadata, quantized=True)
        )
    writer = BufferWriter(plan.count, mode=plan.mode, cloud_id=cloud_id, metadata=metadata)
    lo, hi = plan.write(writer.positions, writer.colors, writer.segments)
    return writer.finish(lo, hi)

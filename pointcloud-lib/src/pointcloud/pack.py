"""Projection straight into the final PCLD buffer: the orchestrator's per-generation hot path.

``pack_planar(...)`` gives the same bytes as ``encode(project_planar(...), mode="planar", ...)``
(header padding aside) without the intermediate (N, 3) positions array and the copy out of it:
one output allocation, written once.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from pointcloud.pcld import BufferWriter, header_extras, quantization_step, quantize
from pointcloud.projection import Projection, plan_equirect, plan_planar

FOCAL_SOURCES = ("model", "exif", "default_fov", "caller")


def pack_planar(
    depth: np.ndarray,
    rgb: np.ndarray,
    categories: np.ndarray | None = None,
    *,
    cloud_id: str,
    metadata: dict[str, Any] | None = None,
    quantized: bool = False,
    extra_header: Mapping[str, Any] | None = None,
    focal_source: str | None = None,
    stats: dict[str, Any] | None = None,
    **projection: Any,
) -> memoryview:
    """:func:`pointcloud.project_planar` (same keyword arguments, ``edge_rtol`` included)
    encoded as PCLD, mode "planar". Returns a read-only, contiguous byte memoryview (what
    Starlette's ``Response``, ``Path.write_bytes`` and :func:`pointcloud.decode` take;
    ``bytes(view)`` copies).

    The header's ``camera`` comes from the projection keywords; ``focal_source`` says where
    the focal length came from (see :func:`planar_focal_source`). A ``stats`` dict, when given,
    receives ``edges_dropped``: the points the edge clean-up removed (the header's count says
    how many were kept)."""
    plan = plan_planar(depth, rgb, categories, **projection)
    _report(plan, stats)
    camera = plan.full_camera(planar_focal_source(focal_source, projection))
    return _pack(plan, cloud_id, metadata, quantized, header_extras(camera, extra_header))


def pack_equirect(
    depth: np.ndarray,
    rgb: np.ndarray,
    categories: np.ndarray | None = None,
    *,
    cloud_id: str,
    metadata: dict[str, Any] | None = None,
    quantized: bool = False,
    extra_header: Mapping[str, Any] | None = None,
    stats: dict[str, Any] | None = None,
    **projection: Any,
) -> memoryview:
    """:func:`pointcloud.project_equirect` (same keyword arguments) encoded as PCLD, mode
    "equirect"; returns and reports as :func:`pack_planar` does."""
    plan = plan_equirect(depth, rgb, categories, **projection)
    _report(plan, stats)
    camera = plan.full_camera(None)
    return _pack(plan, cloud_id, metadata, quantized, header_extras(camera, extra_header))


def planar_focal_source(focal_source: str | None, projection: Mapping[str, Any]) -> str:
    """``focal_source`` checked, or inferred: "caller" when the caller passed a focal length or
    field of view (it knows better where it came from: "model", "exif"), else "default_fov"."""
    if focal_source is None:
        given = (projection.get("focal_length_px"), projection.get("fov_deg"))
        return "default_fov" if given == (None, None) else "caller"
    if focal_source not in FOCAL_SOURCES:
        raise ValueError(
            f"focal_source must be one of {', '.join(FOCAL_SOURCES)}; got {focal_source!r}"
        )
    return focal_source


def _report(plan: Projection, stats: dict[str, Any] | None) -> None:
    if stats is not None:
        stats["edges_dropped"] = plan.edges_dropped


def _pack(
    plan: Projection,
    cloud_id: str,
    metadata: dict[str, Any] | None,
    quantized: bool,
    extra: dict[str, Any],
) -> memoryview:
    writer = BufferWriter(
        plan.count,
        mode=plan.mode,
        cloud_id=cloud_id,
        metadata=metadata,
        quantized=quantized,
        extra=extra,
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

"""The closed choices of a generation, as string enums: their values are the strings the API and
``metadata.json`` have always carried, so JSON answers are unchanged (a ``StrEnum`` member is
its value wherever a string is expected)."""

from __future__ import annotations

from enum import StrEnum


class Source(StrEnum):
    PROMPT = "prompt"
    UPLOAD = "upload"


class Mode(StrEnum):
    # A landscape photo, projected through a pinhole camera.
    STANDARD = "standard"
    # A 2:1 equirectangular panorama: a sphere of points.
    PANORAMA = "panorama"


class Quality(StrEnum):
    """Per-request quality (orchestrator.quality)."""

    DRAFT = "draft"
    STANDARD = "standard"
    HIGH = "high"


class Geometry(StrEnum):
    """What a format made of the cloud holds (``?geometry=``): every point, or the triangles
    of the depth grid (pointcloud.mesh)."""

    POINTS = "points"
    MESH = "mesh"


class Status(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


TERMINAL = frozenset({Status.COMPLETED, Status.FAILED, Status.CANCELLED})
ACTIVE = (Status.QUEUED, Status.RUNNING)


class OutputFormat(StrEnum):
    """A file the API makes of a generation's cloud (orchestrator.formats has one entry each):
    its value is the name ``?format=`` takes."""

    FLOAT = "float"
    QUANTIZED = "quantized"
    GRID = "grid"
    PLY = "ply"
    GLB = "glb"
    SPLAT = "splat"
    SPZ = "spz"
    GAUSSIAN_PLY = "gaussian_ply"

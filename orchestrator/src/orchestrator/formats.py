"""The one registry of output formats: what the API can make of a generation's cloud.

Each entry names the format, its media type, the ``Accept`` values that select it on
``POST /generate``, its builder (orchestrator.engine_assets), the file it is served as under
``/generations/{id}/``, and whether it is cached beside the generation once built. Both routes,
the metrics, the store and the pipeline read this table: adding a format is a member of
:class:`orchestrator.enums.OutputFormat` (its ``?format=`` name), one entry here and one
builder there; no other module lists them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from orchestrator import engine_assets
from orchestrator.engine_assets import BuildInput
from orchestrator.enums import Geometry, OutputFormat

# The stored cloud (PCLD v1), which the other formats are made from.
CLOUD_FILE = "pointcloud.bin"
OCTET_STREAM = "application/octet-stream"
# The grid variant of PCLD (version 2, pointcloud-lib FORMAT.md).
GRID_MEDIA_TYPE = "application/x-pcld-grid"


@dataclass(frozen=True)
class Format:
    name: OutputFormat
    media_type: str
    # None: the stored pointcloud.bin as it is.
    build: Callable[[BuildInput], bytes] | None
    # The file it is served as under /generations/{id}/; a format on the same file as another
    # entry is a variant of it, chosen by ?format=<name>.
    asset: str
    # POST /generate answers with it (?format=<name>, or one of `accept` in the Accept header).
    on_generate: bool = False
    accept: tuple[str, ...] = ()
    # The file it is kept as beside the generation once built (None: built per request).
    cached: str | None = None
    # Values of the asset's ?format= passed to the builder as its option; a request with one is
    # built per request, not cached.
    options: tuple[str, ...] = ()
    # The step its build time is reported as (timing_ms, Server-Timing) when the pipeline makes
    # it for POST /generate.
    timing: str | None = None
    # Its label in orchestrator_served_bytes_total when downloaded from /generations.
    metric: str = "other"
    # What it can hold (?geometry=): points, and the depth grid's triangles for the formats
    # that carry faces.
    geometries: tuple[Geometry, ...] = (Geometry.POINTS,)

    def cached_as(self, geometry: Geometry) -> str | None:
        """The file it is kept as for ``geometry`` (a mesh beside the points: scene.mesh.glb)."""
        if self.cached is None or geometry == Geometry.POINTS:
            return self.cached
        stem, dot, suffix = self.cached.rpartition(".")
        return f"{stem}.{geometry}{dot}{suffix}"


FORMATS: dict[OutputFormat, Format] = {f.name: f for f in (
    Format(OutputFormat.FLOAT, OCTET_STREAM, None, CLOUD_FILE, on_generate=True, metric="pcld"),
    Format(OutputFormat.QUANTIZED, OCTET_STREAM, engine_assets.requantize, CLOUD_FILE,
           on_generate=True, accept=("application/x-pcld-quantized",), timing="requantize",
           metric="pcld"),
    Format(OutputFormat.GRID, GRID_MEDIA_TYPE, engine_assets.grid, CLOUD_FILE, on_generate=True,
           accept=(GRID_MEDIA_TYPE,), cached="pointcloud.grid.bin", timing="grid",
           metric="pcld"),
    Format(OutputFormat.PLY, "application/x-ply", engine_assets.ply, "pointcloud.ply",
           metric="ply", geometries=(Geometry.POINTS, Geometry.MESH)),
    Format(OutputFormat.GLB, "model/gltf-binary", engine_assets.glb, "scene.glb",
           on_generate=True, accept=("model/gltf-binary",), cached="scene.glb",
           options=("float", "quantized"), timing="glb", metric="glb",
           geometries=(Geometry.POINTS, Geometry.MESH)),
    Format(OutputFormat.SPLAT, OCTET_STREAM, engine_assets.splat, "scene.splat",
           cached="scene.splat", metric="splat"),
    Format(OutputFormat.SPZ, OCTET_STREAM, engine_assets.spz, "scene.spz", cached="scene.spz",
           metric="spz"),
    Format(OutputFormat.GAUSSIAN_PLY, "application/x-ply", engine_assets.gaussian_ply,
           "gaussians.ply", cached="gaussians.ply", metric="gaussian_ply"),
)}

# What POST /generate can answer with, in the table's order.
GENERATE_FORMATS: tuple[OutputFormat, ...] = tuple(f.name for f in FORMATS.values()
                                                   if f.on_generate)
# The files made from the stored cloud, each once, in the table's order (pointcloud.bin first).
CLOUD_ASSETS: tuple[str, ...] = tuple(dict.fromkeys(f.asset for f in FORMATS.values()))
DERIVED_ASSETS: tuple[str, ...] = tuple(a for a in CLOUD_ASSETS if a != CLOUD_FILE)
CACHED_FILES: tuple[str, ...] = tuple(f.cached_as(g) for f in FORMATS.values() if f.cached
                                      for g in f.geometries)
# The values of ?format= on a download: the variants of the stored cloud and the options
# builders take.
ASSET_QUERY_VALUES: tuple[str, ...] = tuple(dict.fromkeys([
    *(str(f.name) for f in FORMATS.values() if f.asset == CLOUD_FILE),
    *(option for f in FORMATS.values() for option in f.options)]))
MEDIA_TYPES: tuple[str, ...] = tuple(sorted({f.media_type for f in FORMATS.values()}))


def negotiate(query: str | None, accept: str | None) -> OutputFormat:
    """The format POST /generate answers with: ``?format=``, else the first entry one of whose
    Accept values the header names, else the stored cloud as it is."""
    if query is not None:
        return OutputFormat(query)
    if accept:
        for entry in FORMATS.values():
            if entry.on_generate and any(value in accept for value in entry.accept):
                return entry.name
    return OutputFormat.FLOAT


def for_asset(asset: str, query: str | None) -> tuple[Format, str | None] | None:
    """(The format a download of ``asset`` with ``?format=query`` is, the builder's option), or
    None for a file not made from the cloud. A query the asset takes neither as a variant nor
    as an option is ignored."""
    primary = None
    for entry in FORMATS.values():
        if entry.asset != asset:
            continue
        if query is not None and entry.name == query:
            return entry, None
        primary = primary or entry
    if primary is None:
        return None
    return primary, query if query in primary.options else None


def mesh_formats() -> tuple[Format, ...]:
    return tuple(f for f in FORMATS.values() if Geometry.MESH in f.geometries)


def geometry_refusal(what: str, entry: Format | None, geometry: Geometry) -> str | None:
    """Why ``what`` (a file, or a ?format=) cannot be had with ``geometry``; None if it can."""
    if geometry == Geometry.POINTS or (entry is not None and geometry in entry.geometries):
        return None
    offered = ", ".join(dict.fromkeys(f.asset for f in mesh_formats()))
    return f"{what} has no {geometry} geometry; meshes come as {offered}"


def download_metric(asset: str) -> str:
    """The served-bytes label of a file of /generations/{id}/."""
    if asset.endswith(".png"):
        return "png"
    found = for_asset(asset, None)
    return found[0].metric if found is not None else "other"

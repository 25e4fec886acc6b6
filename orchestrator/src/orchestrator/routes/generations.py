"""``/generations``: every stored generation, its metadata and its files."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query
from fastapi.responses import FileResponse, Response

from orchestrator import engine_assets
from orchestrator.errors import ApiError
from orchestrator.pipeline import GRID_MEDIA_TYPE, blocking, regrid, requantize
from orchestrator.records import Generation, GenerationList
from orchestrator.runtime import GenerationIdDep, RuntimeDep
from orchestrator.storage import ASSETS
from pointcloud import decode, glb, to_ply

router = APIRouter(prefix="/generations", tags=["generations"])

# The grid variant of the stored cloud, made on the first request and kept beside it.
GRID_FILE = "pointcloud.grid.bin"

MEDIA_TYPES = {"image.png": "image/png", "depth.png": "image/png", "segments.png": "image/png",
               "pointcloud.bin": "application/octet-stream", "pointcloud.ply": "application/x-ply",
               engine_assets.GLB: glb.MEDIA_TYPE,
               engine_assets.SPLAT: engine_assets.SPLAT_MEDIA_TYPE,
               engine_assets.GAUSSIAN_PLY: "application/x-ply"}
# Derived files built once and cached: asset -> builder(stored cloud path, record).
CACHED_BUILDERS = {engine_assets.GLB: engine_assets.build_glb,
                   engine_assets.SPLAT: engine_assets.build_splat,
                   engine_assets.GAUSSIAN_PLY: engine_assets.build_gaussian_ply}


def _not_found() -> ApiError:
    return ApiError(404, "no generation with this id")


@router.get("", summary="Stored generations, newest first", response_model=GenerationList)
def list_generations(
    runtime: RuntimeDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 20,
    offset: Annotated[int, Query(ge=0)] = 0,
    status: Annotated[Literal["queued", "running", "completed", "failed", "cancelled"] | None,
                      Query(description="Only generations with this status.")] = None,
) -> GenerationList:
    # The store's index: a page reads its own records only.
    records, total = runtime.store.page(limit, offset, status)
    return GenerationList(items=[r.public() for r in records], total=total, limit=limit,
                          offset=offset)


@router.get("/{id}", summary="A generation's metadata", response_model=Generation)
def get_generation(generation_id: GenerationIdDep, runtime: RuntimeDep) -> Generation:
    record = runtime.store.read_record(generation_id)
    if record is None:
        raise _not_found()
    return record.public()


@router.get(
    "/{id}/{asset}",
    summary="A file of a completed generation",
    response_class=Response,
    responses={200: {"content": {t: {"schema": {"type": "string", "format": "binary"}}
                                 for t in sorted({*MEDIA_TYPES.values(), GRID_MEDIA_TYPE})}}},
)
async def get_asset(
    generation_id: GenerationIdDep,
    asset: str,
    runtime: RuntimeDep,
    format: Annotated[Literal["float", "quantized", "grid"] | None, Query(
        description="pointcloud.bin only: `quantized` re-packs the stored cloud smaller; `grid` "
                    "gives the grid variant (PCLD version 2), made once and kept. scene.glb: "
                    "`float` or `quantized` POSITION (KHR_mesh_quantization), made per request; "
                    "by default quantised when within 1 mm, cached.")] = None,
) -> Response:
    """`image.png`, `depth.png` (16-bit normalised depth, 65535 = near), `segments.png` (palette
    image: index = category), `pointcloud.bin` (pointcloud-lib v1), `pointcloud.ply` (made from
    the stored cloud on request), `scene.glb` (glTF 2.0 binary: one POINTS primitive with
    POSITION, COLOR_0 and a `_SEGMENT` category attribute; categories, palette, camera and audio
    descriptors in the scene's extras) and `scene.splat` (Gaussian splats, 32 bytes each:
    position, scale, RGBA, rotation) and `gaussians.ply` (the same Gaussians as a 3D Gaussian
    Splatting PLY), each built on the first request and cached."""
    if asset not in ASSETS:
        raise ApiError(404, f"no asset {asset!r}; a generation has {', '.join(ASSETS)}")
    if asset == engine_assets.GLB and format in ("float", "quantized"):
        path = runtime.store.asset_path(generation_id, "pointcloud.bin")
        if path is not None:
            body = await blocking(engine_assets.build_glb, path, {}, format)
            return Response(body, media_type=glb.MEDIA_TYPE, headers={
                "Content-Disposition": f'inline; filename="{generation_id}-{asset}"'})
    elif asset in CACHED_BUILDERS:
        path = await blocking(runtime.store.derived_asset, generation_id, asset,
                              CACHED_BUILDERS[asset])
    else:
        stored = "pointcloud.bin" if asset == "pointcloud.ply" else asset
        path = runtime.store.asset_path(generation_id, stored)
    if path is None:
        record = runtime.store.read_record(generation_id)
        if record is None:
            raise _not_found()
        raise ApiError(404, f"generation {generation_id} is {record.status}; it has no "
                            "files")
    download = {"Content-Disposition": f'inline; filename="{generation_id}-{asset}"'}
    if asset == "pointcloud.ply":
        body = await blocking(lambda: to_ply(decode(path.read_bytes())))
        return Response(body, media_type=MEDIA_TYPES[asset], headers=download)
    if asset == "pointcloud.bin" and format == "grid":
        cached = await blocking(runtime.store.derived_asset, generation_id, GRID_FILE,
                                lambda source, _record: regrid(source.read_bytes()))
        if cached is None:
            raise ApiError(404, f"no generation {generation_id}")
        return FileResponse(cached, media_type=GRID_MEDIA_TYPE, headers=download)
    if asset == "pointcloud.bin" and format == "quantized":
        body = await blocking(requantize, path.read_bytes())
        return Response(body, media_type=MEDIA_TYPES[asset], headers=download)
    return FileResponse(path, media_type=MEDIA_TYPES[asset], headers=download)


@router.delete("/{id}", status_code=204, summary="Delete a generation")
async def delete_generation(generation_id: GenerationIdDep, runtime: RuntimeDep) -> Response:
    """A generation still queued or running is cancelled first."""
    if runtime.store.read_record(generation_id) is None:
        raise _not_found()
    job = runtime.jobs.get(generation_id)
    if job is not None and not job.terminal:
        await runtime.jobs.cancel(generation_id, "the generation was deleted")
    runtime.store.delete(generation_id)
    runtime.jobs.forget(generation_id)
    return Response(status_code=204)

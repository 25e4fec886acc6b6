"""``/generations``: every stored generation, its metadata and its files."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, Response

from orchestrator import formats
from orchestrator.engine_assets import BuildInput, CloudFacts
from orchestrator.enums import ACTIVE, Geometry, Status
from orchestrator.errors import ApiError
from orchestrator.formats import CLOUD_FILE, Format
from orchestrator.pipeline import blocking
from orchestrator.records import Generation, GenerationList, GenerationRecord
from orchestrator.runtime import GenerationIdDep, RuntimeDep
from orchestrator.storage import ASSETS, valid_id

router = APIRouter(prefix="/generations", tags=["generations"])

# The stored maps (the other stored file, pointcloud.bin, is a format of its own).
PNG_MEDIA_TYPE = "image/png"


def _not_found() -> ApiError:
    return ApiError(404, "no generation with this id")


@router.get("", summary="Stored generations, newest first", response_model=GenerationList)
async def list_generations(
    runtime: RuntimeDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 20,
    offset: Annotated[int, Query(ge=0)] = 0,
    status: Annotated[Status | None,
                      Query(description="Only generations with this status.")] = None,
    cursor: Annotated[str | None, Query(
        max_length=200, description="The `next_cursor` of the previous page: this page starts "
                                    "after it (`offset` then counts from there).")] = None,
) -> GenerationList:
    records, total = await runtime.store.page(limit, offset, status, _cursor_key(cursor))
    next_cursor = None
    if len(records) == limit:
        last = records[-1]
        next_cursor = base64.urlsafe_b64encode(
            f"{last.created_at}\n{last.id}".encode()).decode().rstrip("=")
    return GenerationList(items=[r.public() for r in records], total=total, limit=limit,
                          offset=offset, next_cursor=next_cursor)


def _cursor_key(cursor: str | None) -> tuple[str, str] | None:
    """The (created_at, id) a cursor names; a cursor this server did not give is a 422."""
    if cursor is None:
        return None
    try:
        created_at, _, generation_id = base64.urlsafe_b64decode(
            cursor + "=" * (-len(cursor) % 4)).decode().partition("\n")
    except (ValueError, UnicodeDecodeError):
        generation_id = ""
    if not valid_id(generation_id):
        # FastAPI's shape of a 422, as for any other invalid parameter.
        raise RequestValidationError([{
            "type": "value_error", "loc": ("query", "cursor"),
            "msg": "not a cursor this server gave (use a page's next_cursor)"}])
    return created_at, generation_id


@router.get("/{id}", summary="A generation's metadata", response_model=Generation)
async def get_generation(generation_id: GenerationIdDep, runtime: RuntimeDep) -> Generation:
    record = await runtime.store.read_record(generation_id)
    if record is None:
        raise _not_found()
    return record.public()


@router.get(
    "/{id}/{asset}",
    summary="A file of a completed generation",
    response_class=Response,
    responses={200: {"content": {t: {"schema": {"type": "string", "format": "binary"}}
                                 for t in sorted({PNG_MEDIA_TYPE, *formats.MEDIA_TYPES})}}},
)
async def get_asset(
    generation_id: GenerationIdDep,
    asset: str,
    runtime: RuntimeDep,
    format: Annotated[Literal[formats.ASSET_QUERY_VALUES] | None, Query(  # type: ignore[valid-type]
        description="pointcloud.bin only: `quantized` re-packs the stored cloud smaller; `grid` "
                    "gives the grid variant (PCLD version 2), made once and kept. scene.glb: "
                    "`float` or `quantized` POSITION (KHR_mesh_quantization), made per request; "
                    "by default quantised when within 1 mm, cached.")] = None,
    geometry: Annotated[Geometry, Query(
        description="scene.glb and pointcloud.ply: `mesh` for the triangles of the depth grid "
                    "(two per 2x2 block of kept pixels, none across a dropped edge; GLB: one "
                    "TRIANGLES primitive with NORMAL, COLOR_0 and `_SEGMENT`) instead of the "
                    "points.")] = Geometry.POINTS,
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
    download = {"Content-Disposition": f'inline; filename="{generation_id}-{asset}"'}
    store = runtime.store
    found = formats.for_asset(asset, format)
    refusal = formats.geometry_refusal(asset, None if found is None or found[0].build is None
                                       else found[0], geometry)
    if refusal is not None:
        raise ApiError(400, refusal)
    if found is None:  # a stored map
        path = await store.asset_path(generation_id, asset)
        if path is None:
            raise await _no_files(runtime, generation_id)
        return FileResponse(path, media_type=PNG_MEDIA_TYPE, headers=download)
    output, option = found
    if output.build is None:
        path = await store.asset_path(generation_id, CLOUD_FILE)
    else:
        cloud = await store.completed_cloud(generation_id)
        if cloud is None:
            raise await _no_files(runtime, generation_id)
        source, record = cloud
        if output.cached is None or option is not None:
            # Made per request (an option, or a format not worth keeping).
            body = await blocking(_build, output, source, record, option, geometry)
            return Response(body, media_type=output.media_type, headers=download)
        path = await blocking(store.derived_asset, generation_id, output.cached_as(geometry),
                              source, record,
                              lambda source, record: _build(output, source, record, None,
                                                            geometry))
    if path is None:
        raise await _no_files(runtime, generation_id)
    return FileResponse(path, media_type=output.media_type, headers=download)


def _build(output: Format, source: Path, record: GenerationRecord, option: str | None,
           geometry: Geometry) -> bytes:
    return output.build(BuildInput(source.read_bytes(), CloudFacts.of(record), option,
                                   geometry=geometry))


async def _no_files(runtime, generation_id: str) -> ApiError:
    record = await runtime.store.read_record(generation_id)
    if record is None:
        return _not_found()
    return ApiError(404, f"generation {generation_id} is {record.status}; it has no files")


@router.delete("/{id}", status_code=204, summary="Delete a generation")
async def delete_generation(generation_id: GenerationIdDep, runtime: RuntimeDep) -> Response:
    """A generation still queued or running is cancelled first."""
    record = await runtime.store.read_record(generation_id)
    if record is None:
        raise _not_found()
    if record.status in ACTIVE:
        # This replica's job or another's (asked through the database).
        await runtime.jobs.cancel(generation_id, "the generation was deleted")
    await runtime.store.delete(generation_id)
    runtime.jobs.forget(generation_id)
    return Response(status_code=204)

"""One generation, start to staged files: imagegen (prompts only) -> depth and segment
concurrently -> point cloud, its binary and the PNG maps -> staged assets. The pipeline returns
what it made (:class:`orchestrator.flow.Outcome`) and reports progress through a narrow callback;
the commit of the staged files is the job manager's, so that it happens with no ``await``
between it and the job's state.

Blocking work (decoding, projection, packing, PNG encoding, file writes) runs in worker threads;
numpy, zlib and file I/O release the GIL, so the event loop keeps serving health checks and event
streams meanwhile.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from orchestrator import imaging, quality
from orchestrator.engine_assets import BuildInput, CloudFacts, CloudMaps
from orchestrator.enums import Mode, Source
from orchestrator.errors import ApiError
from orchestrator.flow import JobInputs, Outcome, Progress
from orchestrator.formats import FORMATS
from orchestrator.limits import pixel_cap
from orchestrator.records import (
    Bounds,
    Edges,
    GenerationResult,
    ImageSize,
    Label,
    QualityKnobsRecord,
    ServiceRef,
)
from orchestrator.services import ModelServices
from orchestrator.settings import Settings
from orchestrator.storage import GenerationStore
from pointcloud import (
    CATEGORY_NAMES,
    DEFAULT_EDGE_RTOL,
    DEFAULT_FOV_DEG,
    decode,
    pack_equirect,
    pack_planar,
)
from pointcloud.descriptors import describe
from pointcloud.extend import extend_header
from scene.depth.v1 import depth_pb2
from scene.imagegen.v1 import imagegen_pb2
from scene.segment.v1 import segment_pb2
from scene_rpc.arrays import array_from_proto
from scene_rpc.errors import InvalidInput
from scene_rpc.images import decode_image_bytes, image_message

T = TypeVar("T")

_GENERATION_MODES = {Mode.STANDARD: imagegen_pb2.GENERATION_MODE_STANDARD,
                     Mode.PANORAMA: imagegen_pb2.GENERATION_MODE_PANORAMA}
# How far from exactly 2:1 an uploaded panorama may be (rounding of resized images).
PANORAMA_ASPECT_TOLERANCE = 0.02


async def blocking(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run ``fn`` in a worker thread. If the caller is cancelled, wait for the thread to finish
    before passing the cancellation on: a thread cannot be stopped, and nothing it writes may
    outlive a cancelled job."""
    future = asyncio.ensure_future(asyncio.to_thread(fn, *args, **kwargs))
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        while not future.done():
            try:
                await asyncio.shield(future)
            except asyncio.CancelledError:
                continue
            except BaseException:
                break
        raise


def check_panorama(width: int, height: int) -> None:
    if abs(width / height - 2.0) > 2.0 * PANORAMA_ASPECT_TOLERANCE:
        raise ApiError(400, f"a panorama must be a 2:1 equirectangular image; this one is "
                            f"{width}x{height}")


@dataclass(frozen=True)
class Generated:
    """What imagegen made of a prompt."""

    rgb: np.ndarray
    png: bytes
    model_id: str
    revised_prompt: str | None
    timing_ms: dict[str, float]


@dataclass(frozen=True)
class ModelOutputs:
    """The depth and segment answers, checked, and what the record says of them."""

    normalized_depth: np.ndarray
    depth_m: np.ndarray | None
    focal_length_px: float | None
    # The model's horizontal field of view, used when it gives no focal length.
    fov_deg: float | None
    categories: np.ndarray
    depth: depth_pb2.EstimateDepthResponse
    segment: segment_pb2.SegmentResponse
    labels: list[Label]


@dataclass(frozen=True)
class ModelCalls:
    """The two model calls: their answers, and what each cost."""

    depth: depth_pb2.EstimateDepthResponse
    segment: segment_pb2.SegmentResponse
    knobs: QualityKnobsRecord
    service_timing_ms: dict[str, dict[str, float]]
    transfer_ms: dict[str, float]


@dataclass(frozen=True)
class BuiltCloud:
    """The stored binary, the /generate body (if one is wanted) and what the record says of
    the cloud."""

    cloud_bin: bytes
    body: bytes | None
    point_count: int
    bounds: Bounds | None
    projection: str
    camera: dict | None
    edges: Edges
    point_stride: int
    descriptors: dict
    focal_length_px: float | None
    focal_source: str | None
    fov_deg: float | None


class Pipeline:
    def __init__(self, settings: Settings, services: ModelServices, store: GenerationStore):
        self.settings = settings
        self.services = services
        self.store = store

    async def __call__(self, generation_id: str, inputs: JobInputs,
                       progress: Progress) -> Outcome:
        generated = None
        if inputs.source == Source.PROMPT:
            generated = await self._generate_image(generation_id, inputs, progress)
            rgb = generated.rgb
        else:
            rgb = inputs.rgb
        height, width = rgb.shape[:2]
        if inputs.mode == Mode.PANORAMA:
            check_panorama(width, height)

        calls = await self._run_models(generation_id, inputs, rgb, progress)
        await self.services.learn_versions()
        outputs = self._check_outputs(rgb, calls)

        progress.enter_stage("pointcloud")
        level = self.settings.png_compress_level
        # Projection + packing and the PNG maps are independent: two threads, two cores.
        cloud, pngs = await asyncio.gather(
            blocking(self._build_cloud, generation_id, inputs, rgb, outputs, progress),
            blocking(self._encode_pngs, rgb if generated is None else None, outputs, level,
                     progress),
        )
        progress.stage_progress("pointcloud", 1.0)
        files = {"image.png": generated.png if generated is not None else pngs["image.png"],
                 "depth.png": pngs["depth.png"], "segments.png": pngs["segments.png"],
                 "pointcloud.bin": cloud.cloud_bin}

        models: dict[str, str | None] = {}
        service_timing_ms: dict[str, dict[str, float]] = {}
        if generated is not None:
            models["imagegen"] = generated.model_id
            service_timing_ms["imagegen"] = generated.timing_ms
        models.update(depth=calls.depth.model_id, sam=calls.segment.sam_model_id or None,
                      semantic=calls.segment.semantic_model_id or None)
        service_timing_ms.update(calls.service_timing_ms)
        result = GenerationResult(
            models=models, service_timing_ms=service_timing_ms, transfer_ms=calls.transfer_ms,
            revised_prompt=generated.revised_prompt if generated is not None else None,
            image=ImageSize(width=width, height=height), quality_knobs=calls.knobs,
            segment_mode=segment_pb2.SegmentMode.Name(calls.segment.mode),
            depth_is_metric=outputs.depth_m is not None,
            focal_length_px=cloud.focal_length_px, focal_source=cloud.focal_source,
            fov_deg=cloud.fov_deg, tile_count=calls.depth.tile_count, labels=outputs.labels,
            services={c.name: ServiceRef(address=c.address, version=c.version or None)
                      for c in self.services.clients},
            point_count=cloud.point_count, bounds=cloud.bounds, projection=cloud.projection,
            camera=cloud.camera, edges=cloud.edges, point_stride=cloud.point_stride,
            descriptors=cloud.descriptors,
            assets={name: len(data) for name, data in files.items()})

        progress.enter_stage("storage")
        staging = self.store.staging(generation_id)
        try:
            with _timed(progress, "storage"):
                await blocking(_write_files, staging, files)
        except BaseException:
            self.store.discard(staging)
            raise
        progress.stage_progress("storage", 1.0)
        return Outcome(staging, result, cloud.body)

    async def _generate_image(self, generation_id: str, inputs: JobInputs,
                              progress: Progress) -> Generated:
        progress.enter_stage("imagegen")
        request = imagegen_pb2.GenerateImageRequest(
            prompt=inputs.prompt, vibe=inputs.vibe, mode=_GENERATION_MODES[inputs.mode],
            openai_api_key=inputs.openai_api_key or "", request_id=generation_id)
        with _timed(progress, "imagegen"):
            response = await self.services.generate_image(request)
        progress.stage_progress("imagegen", 1.0)
        with _timed(progress, "decode"):
            try:
                # Against what depth and segment take: a larger image would fail there as
                # the client's fault (INVALID_ARGUMENT) when it is imagegen's.
                rgb = await blocking(decode_image_bytes, response.image_png,
                                     max_pixels=pixel_cap(self.services.limits.max_image_pixels))
            except InvalidInput as exc:
                raise ApiError(502, f"the imagegen service returned an unusable image: {exc}",
                               ) from None
        return Generated(rgb, response.image_png, response.model_id,
                         response.revised_prompt or None, dict(response.timing_ms))

    async def _run_models(self, generation_id: str, inputs: JobInputs, rgb: np.ndarray,
                          progress: Progress) -> ModelCalls:
        panorama = inputs.mode == Mode.PANORAMA
        image = image_message(rgb)
        depth_request = depth_pb2.EstimateDepthRequest(image=image, panorama=panorama,
                                                       request_id=generation_id)
        segment_request = segment_pb2.SegmentRequest(image=image, panorama=panorama,
                                                     request_id=generation_id)
        knobs = quality.apply(inputs.quality, panorama=panorama, depth=depth_request,
                              segment=segment_request)
        service_timing_ms: dict[str, dict[str, float]] = {}
        transfer_ms: dict[str, float] = {}

        async def call(stage: str, method, request):
            started = time.perf_counter()
            response = await method(request, lambda p: progress.stage_progress(stage, p.fraction))
            wall = time.perf_counter() - started
            progress.record_timing(stage, wall)
            service_ms = dict(response.timing_ms)
            service_timing_ms[stage] = service_ms
            if "total" in service_ms:
                # Serialisation, the network and queueing in the service: the cost of the call
                # beyond the model's own time.
                transfer_ms[stage] = round(max(wall * 1000 - service_ms["total"], 0), 3)
            progress.stage_progress(stage, 1.0)
            return response

        progress.enter_stage("depth")
        with _timed(progress, "models"):
            try:
                async with asyncio.TaskGroup() as group:
                    depth_task = group.create_task(
                        call("depth", self.services.estimate_depth, depth_request))
                    segment_task = group.create_task(
                        call("segment", self.services.segment_image, segment_request))
            except BaseExceptionGroup as errors:
                # The first failure names the service; the other call was cancelled by then.
                raise _first_error(errors) from None
        return ModelCalls(depth_task.result(), segment_task.result(),
                          QualityKnobsRecord.model_validate(knobs.describe()),
                          service_timing_ms, transfer_ms)

    def _check_outputs(self, rgb: np.ndarray, calls: ModelCalls) -> ModelOutputs:
        depth, segment = calls.depth, calls.segment
        shape = rgb.shape[:2]
        depth_address = self.services.depth.address
        segment_address = self.services.segment.address
        try:
            normalized = array_from_proto(depth.normalized_depth, dtype=np.float32, ndim=2)
            depth_m = (array_from_proto(depth.depth_m, dtype=np.float32, ndim=2)
                       if depth.HasField("depth_m") else None)
        except ValueError as exc:
            raise ApiError(502, f"the depth service at {depth_address} returned a malformed map: "
                                f"{exc}") from None
        try:
            categories = array_from_proto(segment.categories, dtype=np.uint8, ndim=2)
        except ValueError as exc:
            raise ApiError(502, f"the segment service at {segment_address} returned malformed "
                                f"categories: {exc}") from None
        for name, address, array in (("depth", depth_address, normalized),
                                     ("depth", depth_address, depth_m),
                                     ("segment", segment_address, categories)):
            if array is not None and array.shape != shape:
                raise ApiError(502, f"the {name} service at {address} returned a "
                                    f"{array.shape[1]}x{array.shape[0]} map for a "
                                    f"{shape[1]}x{shape[0]} image")
        focal = depth.focal_length_px if depth.HasField("focal_length_px") else None
        fov = depth.horizontal_fov_deg if depth.HasField("horizontal_fov_deg") else None
        labels = [
            Label(label=label.label, ade20k_id=label.ade20k_id, category=int(label.category),
                  category_name=CATEGORY_NAMES[label.category]
                  if label.category < len(CATEGORY_NAMES) else None,
                  pixel_fraction=round(label.pixel_fraction, 6))
            for label in segment.labels]
        return ModelOutputs(normalized, depth_m, focal, fov, categories, depth, segment, labels)

    def _build_cloud(self, generation_id: str, inputs: JobInputs, rgb: np.ndarray,
                     outputs: ModelOutputs, progress: Progress) -> BuiltCloud:
        """Project straight into the PCLD buffer (pointcloud's fused pack), then the /generate
        body in the format the request chose (orchestrator.formats)."""
        settings = self.settings
        metric = outputs.depth_m is not None
        depth = outputs.depth_m if metric else outputs.normalized_depth
        metadata = {"generation_id": generation_id, "source": str(inputs.source),
                    "scene_mode": str(inputs.mode)}
        edge_rtol = self._edge_rtol(inputs.edges)
        stats: dict[str, int] = {}
        stride = max(settings.point_stride, quality.QUALITY_KNOBS[inputs.quality].point_stride)
        options = dict(cloud_id=generation_id, metadata=metadata, depth_is_metric=metric,
                       near_m=settings.near_m, far_m=settings.far_m, stride=stride,
                       max_points=settings.max_points or None, edge_rtol=edge_rtol)
        standard = inputs.mode == Mode.STANDARD
        focal, focal_source = outputs.focal_length_px, "model"
        if standard:
            focal, focal_source, depth = _choose_focal(outputs, inputs.exif_focal_px, depth)
            options.update(focal_length_px=focal, fov_deg=outputs.fov_deg,
                           focal_source=focal_source)
        started = time.perf_counter()
        pack = pack_planar if standard else pack_equirect
        cloud_bin = pack(depth, rgb, outputs.categories, stats=stats, **options)
        progress.record_timing("pointcloud", time.perf_counter() - started)
        started = time.perf_counter()
        cloud_bin, descriptors = with_descriptors(cloud_bin, outputs.segment.labels)
        progress.record_timing("descriptors", time.perf_counter() - started)
        header = decode(cloud_bin).header  # zero-copy; the header says what was built
        fov_deg = outputs.fov_deg or DEFAULT_FOV_DEG if standard and focal is None else None
        body = None
        if inputs.output is not None:
            output = FORMATS[inputs.output]
            if output.build is None:
                body = cloud_bin
            else:
                maps = CloudMaps(depth, rgb, outputs.categories,
                                 "planar" if standard else "equirect", options, descriptors)
                facts = CloudFacts(width=rgb.shape[1], height=rgb.shape[0], point_stride=stride,
                                   focal_length_px=focal, fov_deg=fov_deg, edge_rtol=edge_rtol)
                started = time.perf_counter()
                body = output.build(BuildInput(cloud_bin, facts, maps=maps,
                                               geometry=inputs.geometry))
                progress.record_timing(output.timing or output.name,
                                       time.perf_counter() - started)
        return BuiltCloud(
            cloud_bin=cloud_bin, body=body, point_count=header["count"],
            bounds=Bounds.model_validate(header["bounds"]) if header["bounds"] else None,
            projection=header["mode"],
            camera=header.get("camera"),
            edges=Edges(rtol=edge_rtol, dropped=stats.get("edges_dropped", 0)),
            # What scene.splat needs to size its Gaussians (the pixel footprint).
            point_stride=stride, descriptors=descriptors,
            focal_length_px=focal,
            focal_source=focal_source if standard else None, fov_deg=fov_deg)

    def _edge_rtol(self, edges: str | float | None) -> float | None:
        """The request's `edges` over the EDGE_RTOL setting (0 = off); None = keep all."""
        if edges == "keep":
            return None
        if isinstance(edges, float):
            return edges
        configured = self.settings.edge_rtol or None
        if edges == "drop":
            return configured or DEFAULT_EDGE_RTOL
        return configured

    def _encode_pngs(self, rgb: np.ndarray | None, outputs: ModelOutputs, level: int,
                     progress: Progress) -> dict[str, bytes]:
        started = time.perf_counter()
        pngs = {"depth.png": imaging.depth_png(outputs.normalized_depth, level),
                "segments.png": imaging.segments_png(outputs.categories, level)}
        if rgb is not None:
            pngs["image.png"] = imaging.rgb_png(rgb, level)
        progress.record_timing("png", time.perf_counter() - started)
        return pngs


def with_descriptors(buffer: memoryview, labels) -> tuple[bytes, dict[str, Any]]:
    """The packed cloud with its audio descriptors in the header, and the descriptors.

    They describe the projected positions, which exist only once the cloud is packed; so the
    header is rewritten and the blocks follow it verbatim (one copy; any PCLD variant)."""
    cloud = decode(buffer)  # zero-copy views
    descriptors = describe(cloud, [
        {"label": label.label, "ade20k_id": label.ade20k_id, "category": label.category,
         "pixel_fraction": label.pixel_fraction} for label in labels])
    return extend_header(buffer, {"descriptors": descriptors}), descriptors


def _choose_focal(outputs: ModelOutputs, exif_focal_px: float | None, depth: np.ndarray
                  ) -> tuple[float | None, str, np.ndarray]:
    """(focal length, its source, depth): the photo's EXIF wins over the model's estimate, as in
    Apple's DepthPro reference, whose metric depth scales with the focal length it is given
    (depth = f_px / (W * canonical inverse depth)): a metric map estimated with the model's own
    focal is rescaled by f_exif / f_model so the geometry stays the model's, seen through the
    camera's true lens. Without either, the default field of view applies."""
    model_focal = outputs.focal_length_px
    if exif_focal_px is not None:
        if outputs.depth_m is not None and model_focal:
            depth = depth * np.float32(exif_focal_px / model_focal)
        return exif_focal_px, "exif", depth
    if model_focal is not None:
        return model_focal, "model", depth
    # The model's own field of view (without a focal) is still the model's estimate.
    return None, "model" if outputs.fov_deg else "default_fov", depth


def _first_error(group: BaseExceptionGroup) -> BaseException:
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            return _first_error(exc)
        return exc
    return group


@contextmanager
def _timed(progress: Progress, step: str):
    started = time.perf_counter()
    try:
        yield
    finally:
        progress.record_timing(step, time.perf_counter() - started)


def _write_files(folder: Path, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        with open(folder / name, "wb") as handle:
            handle.write(data)
            handle.flush()
            # Durable before the record that points at them is committed.
            os.fsync(handle.fileno())

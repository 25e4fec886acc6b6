"""One generation, start to staged files: imagegen (prompts only) -> depth and segment
concurrently -> point cloud, its binary and the PNG maps -> staged assets. The commit of the
staged files is the job manager's (see ``jobs.py``), so that it happens with no ``await``
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
from orchestrator.errors import ApiError
from orchestrator.jobs import Job, Prepared
from orchestrator.limits import pixel_cap
from orchestrator.services import ModelServices
from orchestrator.settings import Settings
from orchestrator.storage import GenerationStore
from pointcloud import (
    CATEGORY_NAMES,
    DEFAULT_EDGE_RTOL,
    DEFAULT_FOV_DEG,
    HEADER_KEYS,
    decode,
    encode,
    pack_equirect,
    pack_grid,
    pack_grid_from_cloud,
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

_GENERATION_MODES = {"standard": imagegen_pb2.GENERATION_MODE_STANDARD,
                     "panorama": imagegen_pb2.GENERATION_MODE_PANORAMA}
# How far from exactly 2:1 an uploaded panorama may be (rounding of resized images).
PANORAMA_ASPECT_TOLERANCE = 0.02
# The grid variant of PCLD (version 2, pointcloud-lib FORMAT.md).
GRID_MEDIA_TYPE = "application/x-pcld-grid"


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


@dataclass
class ModelOutputs:
    normalized_depth: np.ndarray
    depth_m: np.ndarray | None
    focal_length_px: float | None
    # The model's horizontal field of view, used when it gives no focal length.
    fov_deg: float | None
    categories: np.ndarray
    depth: depth_pb2.EstimateDepthResponse
    segment: segment_pb2.SegmentResponse


class Pipeline:
    def __init__(self, settings: Settings, services: ModelServices, store: GenerationStore):
        self.settings = settings
        self.services = services
        self.store = store

    async def __call__(self, job: Job) -> Prepared:
        inputs = job.inputs
        result: dict[str, Any] = {"models": {}, "service_timing_ms": {}, "transfer_ms": {}}
        image_png: bytes | None = None
        if inputs.source == "prompt":
            rgb, image_png = await self._generate_image(job, result)
        else:
            rgb = inputs.rgb
        height, width = rgb.shape[:2]
        if inputs.mode == "panorama":
            check_panorama(width, height)
        result["image"] = {"width": width, "height": height}

        outputs = await self._run_models(job, rgb, result)

        job.enter_stage("pointcloud")
        level = self.settings.png_compress_level
        # Projection + packing and the PNG maps are independent: two threads, two cores.
        (cloud_bin, body, cloud_info), pngs = await asyncio.gather(
            blocking(self._build_cloud, job, rgb, outputs, _body_format(inputs)),
            blocking(self._encode_pngs, job, rgb if image_png is None else None, outputs, level),
        )
        job.stage_progress("pointcloud", 1.0)
        result.update(cloud_info)
        files = {"image.png": image_png if image_png is not None else pngs["image.png"],
                 "depth.png": pngs["depth.png"], "segments.png": pngs["segments.png"],
                 "pointcloud.bin": cloud_bin}
        result["assets"] = {name: len(data) for name, data in files.items()}

        job.enter_stage("storage")
        staging = self.store.staging(job.id)
        try:
            with _timed(job, "storage"):
                await blocking(_write_files, staging, files)
        except BaseException:
            self.store.discard(staging)
            raise
        job.stage_progress("storage", 1.0)
        return Prepared(staging, result, body if inputs.return_body else None)

    async def _generate_image(self, job: Job, result: dict[str, Any]) -> tuple[np.ndarray, bytes]:
        inputs = job.inputs
        job.enter_stage("imagegen")
        request = imagegen_pb2.GenerateImageRequest(
            prompt=inputs.prompt, vibe=inputs.vibe, mode=_GENERATION_MODES[inputs.mode],
            openai_api_key=inputs.openai_api_key or "", request_id=job.id)
        with _timed(job, "imagegen"):
            response = await self.services.generate_image(request)
        job.stage_progress("imagegen", 1.0)
        with _timed(job, "decode"):
            try:
                # Against what depth and segment take: a larger image would fail there as
                # the client's fault (INVALID_ARGUMENT) when it is imagegen's.
                rgb = await blocking(decode_image_bytes, response.image_png,
                                     max_pixels=pixel_cap(self.services.limits.max_image_pixels))
            except InvalidInput as exc:
                raise ApiError(502, f"the imagegen service returned an unusable image: {exc}",
                               ) from None
        result["models"]["imagegen"] = response.model_id
        result["revised_prompt"] = response.revised_prompt or None
        result["service_timing_ms"]["imagegen"] = dict(response.timing_ms)
        return rgb, response.image_png

    async def _run_models(self, job: Job, rgb: np.ndarray, result: dict[str, Any]) -> ModelOutputs:
        panorama = job.inputs.mode == "panorama"
        image = image_message(rgb)
        depth_request = depth_pb2.EstimateDepthRequest(image=image, panorama=panorama,
                                                       request_id=job.id)
        segment_request = segment_pb2.SegmentRequest(image=image, panorama=panorama,
                                                     request_id=job.id)
        knobs = quality.apply(job.quality, panorama=panorama, depth=depth_request,
                              segment=segment_request)
        result["quality_knobs"] = knobs.describe()

        async def call(stage: str, method, request):
            started = time.perf_counter()
            response = await method(request, lambda p: job.stage_progress(stage, p.fraction))
            wall = time.perf_counter() - started
            job.record_timing(stage, wall)
            service_ms = dict(response.timing_ms)
            result["service_timing_ms"][stage] = service_ms
            if "total" in service_ms:
                # Serialisation, the network and queueing in the service: the cost of the call
                # beyond the model's own time.
                result["transfer_ms"][stage] = round(max(wall * 1000 - service_ms["total"], 0), 3)
            job.stage_progress(stage, 1.0)
            return response

        job.enter_stage("depth")
        with _timed(job, "models"):
            try:
                async with asyncio.TaskGroup() as group:
                    depth_task = group.create_task(
                        call("depth", self.services.estimate_depth, depth_request))
                    segment_task = group.create_task(
                        call("segment", self.services.segment_image, segment_request))
            except BaseExceptionGroup as errors:
                # The first failure names the service; the other call was cancelled by then.
                raise _first_error(errors) from None
        depth, segment = depth_task.result(), segment_task.result()
        await self.services.learn_versions()
        return self._check_outputs(rgb, depth, segment, result)

    def _check_outputs(self, rgb, depth, segment, result) -> ModelOutputs:
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
        result["models"].update(depth=depth.model_id, sam=segment.sam_model_id or None,
                                semantic=segment.semantic_model_id or None)
        result["segment_mode"] = segment_pb2.SegmentMode.Name(segment.mode)
        result["depth_is_metric"] = depth_m is not None
        result["focal_length_px"] = focal
        result["tile_count"] = depth.tile_count
        result["labels"] = [
            {"label": label.label, "ade20k_id": label.ade20k_id,
             "category": int(label.category),
             "category_name": CATEGORY_NAMES[label.category]
             if label.category < len(CATEGORY_NAMES) else None,
             "pixel_fraction": round(label.pixel_fraction, 6)}
            for label in segment.labels]
        result["services"] = {c.name: {"address": c.address, "version": c.version or None}
                              for c in self.services.clients}
        return ModelOutputs(normalized, depth_m, focal, fov, categories, depth, segment)

    def _build_cloud(self, job: Job, rgb: np.ndarray, outputs: ModelOutputs,
                     body_format: str | None) -> tuple[memoryview, bytes | None, dict]:
        """Project straight into the PCLD buffer (pointcloud's fused pack). Returns the stored
        binary, the /generate body (if one is wanted) and what the record says of the cloud."""
        settings = self.settings
        metric = outputs.depth_m is not None
        depth = outputs.depth_m if metric else outputs.normalized_depth
        metadata = {"generation_id": job.id, "source": job.source, "scene_mode": job.mode}
        edge_rtol = self._edge_rtol(job.inputs.edges)
        stats: dict[str, Any] = {}
        stride = max(settings.point_stride, quality.QUALITY_KNOBS[job.quality].point_stride)
        options = dict(cloud_id=job.id, metadata=metadata, depth_is_metric=metric,
                       near_m=settings.near_m, far_m=settings.far_m, stride=stride,
                       max_points=settings.max_points or None, edge_rtol=edge_rtol)
        focal, focal_source = outputs.focal_length_px, "model"
        if job.mode == "standard":
            focal, focal_source, depth = _choose_focal(outputs, job.inputs.exif_focal_px, depth)
            options.update(focal_length_px=focal, fov_deg=outputs.fov_deg,
                           focal_source=focal_source)
        started = time.perf_counter()
        pack = pack_equirect if job.mode == "panorama" else pack_planar
        cloud_bin = pack(depth, rgb, outputs.categories, stats=stats, **options)
        job.record_timing("pointcloud", time.perf_counter() - started)
        started = time.perf_counter()
        cloud_bin, descriptors = with_descriptors(cloud_bin, outputs.segment.labels)
        job.record_timing("descriptors", time.perf_counter() - started)
        header = decode(cloud_bin).header  # zero-copy; the header says what was built
        body = None
        if body_format == "quantized":
            started = time.perf_counter()
            body = requantize(cloud_bin)
            job.record_timing("requantize", time.perf_counter() - started)
        elif body_format == "grid":
            started = time.perf_counter()
            grid_mode = "equirect" if job.mode == "panorama" else "planar"
            body = pack_grid(depth, rgb, outputs.categories, mode=grid_mode,
                             extra_header={"descriptors": descriptors}, **options)
            job.record_timing("grid", time.perf_counter() - started)
        elif body_format is not None:
            body = cloud_bin
        info = {"point_count": header["count"], "bounds": header["bounds"],
                "projection": header["mode"], "camera": header.get("camera"),
                "edges": {"rtol": edge_rtol, "dropped": stats.get("edges_dropped", 0)}}
        # What scene.splat needs to size its Gaussians (the pixel footprint).
        info["point_stride"] = stride
        info["descriptors"] = descriptors
        if job.mode == "standard":
            info["focal_source"] = focal_source
            info["focal_length_px"] = focal
            if focal is None:
                info["fov_deg"] = outputs.fov_deg or DEFAULT_FOV_DEG
        return cloud_bin, body, info

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

    def _encode_pngs(self, job: Job, rgb: np.ndarray | None, outputs: ModelOutputs,
                     level: int) -> dict[str, bytes]:
        started = time.perf_counter()
        pngs = {"depth.png": imaging.depth_png(outputs.normalized_depth, level),
                "segments.png": imaging.segments_png(outputs.categories, level)}
        if rgb is not None:
            pngs["image.png"] = imaging.rgb_png(rgb, level)
        job.record_timing("png", time.perf_counter() - started)
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


def _body_format(inputs) -> str | None:
    """What /generate answers with: None (a job, no body), "float", "quantized" or "grid"."""
    if not inputs.return_body:
        return None
    return "grid" if inputs.grid else "quantized" if inputs.quantized else "float"


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


def requantize(buffer: bytes | memoryview) -> bytes:
    """A PCLD buffer re-packed with quantised positions (the same cloud, 10 bytes a point);
    header keys beyond the format's (camera, descriptors, ...) carry over."""
    cloud = decode(buffer)
    header = cloud.header
    extra = {k: v for k, v in header.items() if k not in HEADER_KEYS}
    return encode(cloud, mode=header["mode"], cloud_id=header["id"],
                  metadata=header.get("metadata"), quantized=True,
                  camera=header.get("camera"), extra_header=extra)


def regrid(buffer: bytes | memoryview) -> bytes:
    """A stored PCLD v1 buffer as the grid variant (every point back on its pixel)."""
    return pack_grid_from_cloud(decode(buffer))


def _first_error(group: BaseExceptionGroup) -> BaseException:
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            return _first_error(exc)
        return exc
    return group


@contextmanager
def _timed(job: Job, step: str):
    started = time.perf_counter()
    try:
        yield
    finally:
        job.record_timing(step, time.perf_counter() - started)


def _write_files(folder: Path, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        with open(folder / name, "wb") as handle:
            handle.write(data)
            handle.flush()
            # Durable before the record that points at them is committed.
            os.fsync(handle.fileno())

"""One segmentation request from decoded pixels to categories: the semantic pass, SAM2's automatic
masks, fusion, with progress reports and cancellation between prompt batches.

All model work runs on one inference thread: requests queue in arrival order, a request cancelled
while queued never starts, and a running one stops at its next prompt batch. The event loop stays
free for health checks, Info and streaming progress.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image

from scene_rpc.errors import InvalidInput
from scene_rpc.metrics import PassMeter
from scene_rpc.progress import Progress
from segment_service.categories import ADE20K_NAMES
from segment_service.fusion import categories_of, fuse, label_shares
from segment_service.mask_generation import AmgParams, WorkCancelled, count_batches, generate_masks
from segment_service.mask_geometry import Crop, crop_pixels, plan_crops
from segment_service.models import SamModel, SemanticModel
from segment_service.prompts import semantic_prompts
from segment_service.settings import (
    ACCELERATOR_POINTS_PER_BATCH,
    CPU_POINTS_PER_BATCH,
    MAX_POINTS_PER_SIDE,
    MIN_INPUT_SIDE_PX,
    CropMode,
    Mode,
    PromptStrategy,
    Settings,
)

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class Knobs:
    """Per-request quality knobs; 0 / None = the service's setting for the mode."""

    points_per_side: int = 0
    crop_points_per_side: int = 0
    prompt_strategy: PromptStrategy | None = None
    crop_mode: CropMode | None = None
    max_input_side_px: int = 0

    def __post_init__(self) -> None:
        for name, kind in (("prompt_strategy", PromptStrategy), ("crop_mode", CropMode)):
            value = getattr(self, name)
            if value is not None:
                try:  # plain strings ("grid", "off") become the enum
                    object.__setattr__(self, name, kind(value))
                except ValueError:
                    raise InvalidInput(f"unknown {name} {value!r}: one of "
                                       f"{', '.join(k.value for k in kind)}") from None
        for name in ("points_per_side", "crop_points_per_side"):
            value = getattr(self, name)
            if not 0 <= value <= MAX_POINTS_PER_SIDE:
                raise InvalidInput(f"{name}={value}: 0 (the service's default) to "
                                   f"{MAX_POINTS_PER_SIDE}")
        cap = self.max_input_side_px
        if cap != 0 and not MIN_INPUT_SIDE_PX <= cap:
            raise InvalidInput(f"max_input_side_px={cap}: 0 (the service's default) or at least "
                               f"{MIN_INPUT_SIDE_PX}")


@dataclass(frozen=True)
class Label:
    ade20k_id: int
    label: str
    pixel_fraction: float
    category: int


@dataclass
class SegmentResult:
    categories: np.ndarray  # uint8 [H, W]
    labels: list[Label]
    mask_count: int
    mode: Mode
    sam_model_id: str
    semantic_model_id: str
    timing_ms: dict[str, float] = field(default_factory=dict)
    prompt_count: int = 0  # SAM2 point prompts decoded


class _ProgressCounter:
    """Turns stage reports into overall fractions: one unit for the semantic pass, one per crop
    embedding, one per prompt batch, one for fusion."""

    def __init__(self, total_units: int, emit: Callable[[Progress], None]) -> None:
        self.total = max(1, total_units)
        self.done = 0
        self.emit = emit
        self.meter = PassMeter()

    def step(self, stage: str, done: int, total: int) -> None:
        self.done += 1
        self.meter.step(stage, done)
        self.emit(Progress(stage, done, total, min(1.0, self.done / self.total)))


class Segmenter:
    def __init__(self, settings: Settings, sam: SamModel, semantic: SemanticModel) -> None:
        self.settings = settings
        self.sam = sam
        self.semantic = semantic
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="segment-infer")

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    def points_per_batch(self) -> int:
        if self.settings.points_per_batch:
            return self.settings.points_per_batch
        predictor = self.sam.predictor
        on_cpu = predictor is None or predictor.device.type == "cpu"
        return CPU_POINTS_PER_BATCH if on_cpu else ACCELERATOR_POINTS_PER_BATCH

    def amg_params(self) -> AmgParams:
        s = self.settings
        return AmgParams(
            points_per_batch=self.points_per_batch(),
            pred_iou_thresh=s.pred_iou_thresh,
            stability_score_thresh=s.stability_score_thresh,
            stability_score_offset=s.stability_score_offset,
            box_nms_thresh=s.box_nms_thresh,
            crop_nms_thresh=s.crop_nms_thresh,
            min_region_area=s.min_region_area,
        )

    def plan(self, width: int, height: int, mode: Mode, panorama: bool,
             knobs: Knobs | None = None) -> list[Crop]:
        """The SAM2 crops of a request; none in semantic mode."""
        s = self.settings
        knobs = knobs or Knobs()
        if mode is Mode.SEMANTIC:
            return []
        sam_mode = mode is Mode.SAM
        crops = plan_crops(
            width, height,
            panorama=panorama,
            crop_size_px=s.crop_size_px,
            overlap=s.crop_overlap,
            points_per_side=knobs.points_per_side or (
                s.sam_mode_points_per_side if sam_mode else s.points_per_side),
            crop_points_per_side=knobs.crop_points_per_side or (
                s.sam_mode_crop_points_per_side if sam_mode else s.crop_points_per_side),
        )
        if (knobs.crop_mode or s.crop_mode) is CropMode.OFF:
            return crops[:1]  # the whole image comes first
        return crops

    def prompts(self, class_map: np.ndarray, crops: list[Crop],
                knobs: Knobs | None = None) -> list[torch.Tensor] | None:
        """Each crop's prompts from the semantic map, or None for the uniform grids."""
        knobs = knobs or Knobs()
        if (knobs.prompt_strategy or self.settings.prompt_strategy) is PromptStrategy.GRID:
            return None
        return [semantic_prompts(crop_pixels(class_map, crop), crop.points_per_side)
                for crop in crops]

    async def stream(
        self, rgb: np.ndarray, *, mode: Mode | None = None, panorama: bool = False,
        knobs: Knobs | None = None,
    ) -> AsyncIterator[Progress | SegmentResult]:
        """Progress events, then exactly one SegmentResult.

        Closing the iterator early (the caller went away) cancels the work between batches.
        """
        mode = mode or self.settings.mode
        loads = [self.semantic.ensure_loaded()]
        if mode is not Mode.SEMANTIC:
            loads.append(self.sam.ensure_loaded())
        await asyncio.gather(*loads)

        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Progress] = asyncio.Queue()
        cancel = threading.Event()

        def emit(progress: Progress) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, progress)

        work = loop.run_in_executor(self._executor, self._run, rgb, mode, panorama,
                                    knobs or Knobs(), emit, cancel)
        getter: asyncio.Future | None = None
        try:
            while True:
                getter = asyncio.ensure_future(queue.get())
                done, _ = await asyncio.wait({work, getter}, return_when=asyncio.FIRST_COMPLETED)
                if getter in done:
                    yield getter.result()
                    continue
                getter.cancel()
                while not queue.empty():
                    yield queue.get_nowait()
                yield work.result()
                return
        finally:
            cancel.set()
            if getter is not None:
                getter.cancel()
            work.cancel()  # drops it if still queued behind another request

    async def segment(
        self, rgb: np.ndarray, *, mode: Mode | None = None, panorama: bool = False,
        knobs: Knobs | None = None,
    ) -> SegmentResult:
        events = self.stream(rgb, mode=mode, panorama=panorama, knobs=knobs)
        try:
            async for event in events:
                if isinstance(event, SegmentResult):
                    return event
        finally:
            await events.aclose()
        raise RuntimeError("segmentation produced no result")  # unreachable by construction

    # The blocking part, on the inference thread.

    def _run(
        self,
        rgb: np.ndarray,
        mode: Mode,
        panorama: bool,
        knobs: Knobs,
        emit: Callable[[Progress], None],
        cancel: threading.Event,
    ) -> SegmentResult:
        started = time.perf_counter()
        full_height, full_width = rgb.shape[:2]
        rgb = downscaled(rgb, knobs.max_input_side_px or self.settings.max_input_side_px)
        height, width = rgb.shape[:2]
        crops = self.plan(width, height, mode, panorama, knobs)
        params = self.amg_params()
        # The grid's batches bound the semantic strategy's (never more prompts than the grid), so
        # the fraction only rises when the total is corrected after the semantic pass.
        batches = count_batches(crops, params.points_per_batch)
        progress = _ProgressCounter(2 + len(crops) + batches, emit)
        timing: dict[str, float] = {}
        if (height, width) != (full_height, full_width):
            timing["resize"] = _ms(started)

        if cancel.is_set():
            raise WorkCancelled("cancelled before it started")
        semantic_started = time.perf_counter()
        assert self.semantic.predictor is not None
        class_map = self.semantic.predictor.class_map(
            rgb, panorama=panorama, full_resolution=mode is not Mode.SAM
        )
        timing["semantic"] = _ms(semantic_started)
        progress.step("semantic", 1, 1)

        masks = []
        prompt_count = 0
        if crops:
            assert self.sam.predictor is not None
            prompts = self.prompts(class_map, crops, knobs)
            if prompts is not None:
                batches = count_batches(crops, params.points_per_batch, prompts)
                progress.total = max(1, 2 + len(crops) + batches)
            try:
                amg = generate_masks(
                    self.sam.predictor, rgb, crops, params, panorama=panorama,
                    prompts=prompts, on_progress=progress.step, cancel=cancel,
                )
            except WorkCancelled as exc:
                log.info("segmentation %s", exc)
                raise
            masks = amg.masks
            prompt_count = amg.prompts
            timing["sam_encoder"] = amg.encoder_s * 1000
            timing["mask_decoding"] = amg.decoding_s * 1000
            log.debug("%d crops, %d prompts, %d batches, %d candidates, %d masks", len(crops),
                      amg.prompts, amg.batches, amg.candidates, len(masks))

        fusion_started = time.perf_counter()
        fused, _ = fuse(class_map, masks)
        categories = upscaled_nearest(categories_of(fused), (full_height, full_width))
        names = self.semantic.label_names
        labels = [
            Label(s.ade20k_id, names.get(s.ade20k_id, ADE20K_NAMES[s.ade20k_id]),
                  s.pixel_fraction, s.category)
            for s in label_shares(fused)
        ]
        timing["fusion"] = _ms(fusion_started)
        progress.step("fusion", 1, 1)
        timing["total"] = _ms(started)
        return SegmentResult(
            categories=categories,
            labels=labels,
            mask_count=len(masks),
            mode=mode,
            sam_model_id=self.sam.requested_model_id if crops else "",
            semantic_model_id=self.semantic.requested_model_id,
            timing_ms=timing,
            prompt_count=prompt_count,
        )


def downscaled(rgb: np.ndarray, max_side: int) -> np.ndarray:
    """``rgb`` with its longer side cut to ``max_side`` (aspect kept), or as is (0 = no cap)."""
    height, width = rgb.shape[:2]
    if max_side <= 0 or max(height, width) <= max_side:
        return rgb
    scale = max_side / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    # PIL's bilinear widens its filter when reducing, so the small image is antialiased.
    return np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.BILINEAR))


def upscaled_nearest(labels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``labels`` [h, w] repeated to ``size`` (H, W) by nearest neighbour: categories stay
    categories (no interpolation between class values)."""
    if labels.shape == size:
        return labels
    height, width = size
    rows = (np.arange(height) * labels.shape[0]) // height
    cols = (np.arange(width) * labels.shape[1]) // width
    return labels[rows[:, None], cols[None, :]]


def _ms(since: float) -> float:
    return (time.perf_counter() - since) * 1000

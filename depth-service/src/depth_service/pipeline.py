"""One depth request from RGB pixels to the response's maps: a global pass, optional tiles at
native resolution aligned to it and blended, then normalisation and metric conversion.

The pipeline is an async generator of progress events ending with the result; every forward pass
is awaited separately, so a cancelled request stops between passes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image

from depth_service import panorama as panorama_views
from depth_service import panorama_torch, tiling
from depth_service.backends import (
    MAX_DEPTH_M,
    MIN_DEPTH_M,
    DepthBackend,
    Prediction,
    focal_length_px,
)
from depth_service.normalize import normalize_disparity
from depth_service.panorama import PanoramaMode, ViewLayout
from depth_service.settings import TileMode
from scene_rpc.errors import InvalidInput
from scene_rpc.progress import Progress

log = logging.getLogger(__name__)

# In auto mode, an image is tiled only when its longer side exceeds the tile by this factor: just
# above the native size, tiles would mostly re-run the pixels the global pass already saw.
AUTO_TILE_MARGIN = 1.25
MIN_TILE_PX = 16
# The smallest input-side cap: below it there is nothing left for a model to see.
MIN_INPUT_SIDE_PX = 16
# A panorama's single pass sees this fraction of its width again on each side, across the seam.
PANORAMA_PAD_FRACTION = 1 / 8

Forward = Callable[[Sequence[np.ndarray]], Awaitable[list[Prediction]]]


@dataclass(frozen=True)
class EstimateOptions:
    panorama: bool = False
    tile_mode: TileMode = TileMode.AUTO
    # Tile side in input pixels; 0 = the model's native input side.
    tile_size: int = 0
    tile_overlap: float = 0.25
    # Cap on the longer side of the image the model sees (tiles are planned on the downscaled
    # image, the depth resized back to the input's size); 0 = no cap.
    max_input_side: int = 0
    # How a panorama is predicted: pinhole views merged on the sphere, or equirect tiles.
    panorama_mode: PanoramaMode = PanoramaMode.PERSPECTIVE
    panorama_views: ViewLayout = ViewLayout.CUBE

    def __post_init__(self) -> None:
        if self.max_input_side < 0 or 0 < self.max_input_side < MIN_INPUT_SIDE_PX:
            raise InvalidInput(f"max input side must be 0 (no cap) or at least "
                               f"{MIN_INPUT_SIDE_PX} px, got {self.max_input_side}")
        if self.tile_size < 0 or 0 < self.tile_size < MIN_TILE_PX:
            raise InvalidInput(f"tile size must be 0 (default) or at least {MIN_TILE_PX} px, "
                               f"got {self.tile_size}")
        if not 0.0 < self.tile_overlap <= 0.5:
            raise InvalidInput(f"tile overlap must be in (0, 0.5], got {self.tile_overlap}")


@dataclass
class DepthEstimate:
    # float32 [H, W], 0..1, 1 = near (see normalize.py).
    normalized: np.ndarray
    # float32 [H, W] metres, only from metric models.
    depth_m: np.ndarray | None
    focal_length_px: float | None
    horizontal_fov_deg: float | None
    model_id: str
    tile_count: int
    timing_ms: dict[str, float] = field(default_factory=dict)


def resize_map(values: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a float [h, w] map to ``size`` (height, width)."""
    if values.shape == size:
        return values.astype(np.float32, copy=False)
    tensor = torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32))[None, None]
    resized = torch.nn.functional.interpolate(
        tensor, size=size, mode="bilinear", align_corners=False, antialias=True
    )
    return resized[0, 0].numpy()


class DepthPipeline:
    def __init__(self, backend: DepthBackend, forward: Forward, *, batch_size: int,
                 max_tiles: int) -> None:
        self.backend = backend
        self.forward = forward
        self.batch_size = max(1, batch_size)
        self.max_tiles = max_tiles

    def plan(self, height: int, width: int, options: EstimateOptions) -> tiling.TileGrid | None:
        """The tile grid, or None for a single global pass."""
        if options.tile_mode is TileMode.OFF:
            return None
        tile = options.tile_size or self.backend.native_side
        if options.tile_mode is TileMode.AUTO and max(height, width) <= AUTO_TILE_MARGIN * tile:
            return None
        if options.panorama and width < 2 * MIN_TILE_PX:
            return None
        grid = tiling.plan_grid(height, width, tile, options.tile_overlap,
                                wrap=options.panorama, max_tiles=self.max_tiles)
        # One tile covering the whole image would only repeat the global pass.
        return grid if len(grid) > 1 else None

    async def run(
        self, image: np.ndarray, options: EstimateOptions
    ) -> AsyncIterator[Progress | DepthEstimate]:
        if options.panorama and options.panorama_mode is PanoramaMode.PERSPECTIVE:
            # Its views are at most the model's native input whatever the panorama's size,
            # so the input cap would save nothing here.
            async for event in self._perspective_panorama(image, options.panorama_views):
                yield event
            return
        full_hw = image.shape[:2]
        timing: dict[str, float] = {}
        started = time.perf_counter()
        if _needs_cap(full_hw, options.max_input_side):
            image = await asyncio.to_thread(downscale_to_side, image, options.max_input_side)
            timing["downscale"] = _ms_since(started)
        height, width = image.shape[:2]
        grid = self.plan(height, width, options)
        tiles = grid.tiles if grid is not None else []
        units = 1 + len(tiles)

        mark = time.perf_counter()
        pad = round(width * PANORAMA_PAD_FRACTION) if options.panorama else 0
        [global_prediction] = await self.forward([tiling.pad_wrap(image, pad)])
        global_disparity = await asyncio.to_thread(
            _full_resolution, global_prediction.disparity, height, width, pad
        )
        timing["global_pass"] = _ms_since(mark)
        yield Progress("global_pass", 1, 1, 1 / units)

        disparity = global_disparity
        if grid is not None:
            mark = time.perf_counter()
            predictions: list[Prediction] = []
            for first in range(0, len(tiles), self.batch_size):
                batch = tiles[first : first + self.batch_size]
                crops = [tiling.crop(image, tile, wrap=grid.wrap) for tile in batch]
                predictions += await self.forward(crops)
                yield Progress("tiles", len(predictions), len(tiles),
                                    (1 + len(predictions)) / units)
            timing["tiles"] = _ms_since(mark)
            mark = time.perf_counter()
            disparity = await asyncio.to_thread(
                self._align_and_blend, grid, predictions, global_disparity
            )
            timing["blend"] = _ms_since(mark)

        if (height, width) != full_hw:
            mark = time.perf_counter()
            # Back to the input's size in disparity space, before normalisation and inversion,
            # as the global pass itself is upsampled.
            disparity = await asyncio.to_thread(resize_map, disparity, full_hw)
            timing["upscale"] = _ms_since(mark)
        mark = time.perf_counter()
        normalized, depth_m = await asyncio.to_thread(self._outputs, disparity)
        timing["normalize"] = _ms_since(mark)
        fov = global_prediction.fov_deg
        # A pinhole focal length means nothing for an equirectangular panorama. The field of view
        # does not change with a downscale; the focal length is in the input's pixels.
        pinhole = fov is not None and not options.panorama
        timing["pipeline"] = _ms_since(started)
        yield DepthEstimate(
            normalized=normalized,
            depth_m=depth_m,
            focal_length_px=focal_length_px(fov, full_hw[1]) if pinhole else None,
            horizontal_fov_deg=fov if pinhole else None,
            model_id=self.backend.model_id,
            tile_count=len(tiles),
            timing_ms=timing,
        )

    async def _perspective_panorama(self, image: np.ndarray, layout: ViewLayout,
                                    ) -> AsyncIterator[Progress | DepthEstimate]:
        """A panorama as pinhole views merged on the sphere (``panorama``): progress events,
        then the estimate."""
        height, width = image.shape[:2]
        timing: dict[str, float] = {}
        started = time.perf_counter()
        views = panorama_views.views_for(layout, self.backend.native_side, width)
        # On a GPU the resampling and the merge run there (panorama_torch); numpy on a CPU.
        gpu = _gpu_of(self.backend)
        mark = time.perf_counter()
        if gpu is not None:
            crops = await asyncio.to_thread(panorama_torch.render_views, image, views, gpu)
        else:
            crops = await asyncio.to_thread(
                lambda: [panorama_views.render_view(image, view) for view in views])
        timing["views"] = _ms_since(mark)
        mark = time.perf_counter()
        disparities: list[np.ndarray] = []
        for first in range(0, len(views), self.batch_size):
            predictions = await self.forward(crops[first : first + self.batch_size])
            disparities += [p.disparity for p in predictions]
            yield Progress("views", len(disparities), len(views), len(disparities) / len(views))
        timing["inference"] = _ms_since(mark)
        mark = time.perf_counter()
        if gpu is not None:
            inverse_distance = await asyncio.to_thread(
                panorama_torch.merge_to_equirect, views, disparities, height, width, gpu)
        else:
            inverse_distance = await asyncio.to_thread(
                panorama_views.merge_to_equirect, views, disparities, height, width)
        timing["merge"] = _ms_since(mark)
        mark = time.perf_counter()
        normalized, depth_m = await asyncio.to_thread(self._outputs, inverse_distance)
        timing["normalize"] = _ms_since(mark)
        timing["pipeline"] = _ms_since(started)
        yield DepthEstimate(normalized=normalized, depth_m=depth_m, focal_length_px=None,
                            horizontal_fov_deg=None, model_id=self.backend.model_id,
                            tile_count=len(views), timing_ms=timing)

    def _align_and_blend(self, grid: tiling.TileGrid, predictions: list[Prediction],
                         global_disparity: np.ndarray) -> np.ndarray:
        # Block-average to about the global pass's resolution before fitting: there the two
        # predictions see the same detail, so the fit is not biased by what only the tile sees.
        pool = max(1, round(min(grid.height, grid.width) / self.backend.native_side))
        aligned = []
        unfit = 0
        for tile, prediction in zip(grid.tiles, predictions, strict=True):
            local = resize_map(prediction.disparity, tile.shape)
            reference = tiling.crop(global_disparity, tile, wrap=grid.wrap)
            # Relative depth has a per-tile scale and shift; align each tile to the global pass.
            fit = tiling.fit_scale_shift(local, reference, pool=pool)
            if fit is None:
                unfit += 1
                aligned.append(reference)
            else:
                scale, shift = fit
                aligned.append(scale * local + shift)
        if unfit:
            log.info("%d of %d tiles had no usable fit and keep the global pass", unfit,
                     len(predictions))
        return tiling.blend(grid, aligned)

    def _outputs(self, disparity: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        normalized = normalize_disparity(disparity)
        if not self.backend.metric:
            return normalized, None
        inverse = np.clip(disparity, 1.0 / MAX_DEPTH_M, 1.0 / MIN_DEPTH_M)
        return normalized, (1.0 / inverse).astype(np.float32)


def _gpu_of(backend: DepthBackend) -> torch.device | None:
    """The backend's device when it is a CUDA GPU, else None (a stand-in backend that names no
    device counts as a CPU). Not MPS: panorama_torch's geometry is float64, which MPS lacks."""
    device = torch.device(getattr(backend, "device", "cpu"))
    return device if device.type == "cuda" else None


def _needs_cap(hw: tuple[int, int], max_side: int) -> bool:
    return max_side > 0 and max(hw) > max_side


def downscale_to_side(image: np.ndarray, max_side: int) -> np.ndarray:
    """uint8 RGB [H, W, 3] scaled down, aspect kept, so that its longer side is ``max_side``.

    PIL's bicubic filter widens its support when reducing, so this is antialiased.
    """
    height, width = image.shape[:2]
    scale = max_side / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BICUBIC))


def _full_resolution(values: np.ndarray, height: int, width: int, pad: int) -> np.ndarray:
    """The global prediction upsampled to the input's size, without a panorama's padding."""
    resized = resize_map(values, (height, width + 2 * pad))
    return np.ascontiguousarray(resized[:, pad : pad + width]) if pad else resized


def _ms_since(mark: float) -> float:
    return (time.perf_counter() - mark) * 1000.0

"""The service's one depth model: loaded lazily (primary, else fallback), run on one inference
thread, wrapped around the tiling pipeline."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from depth_service.backends import DepthBackend, Prediction, load_backend
from depth_service.pipeline import DepthEstimate, DepthPipeline, EstimateOptions
from depth_service.settings import Settings
from scene.common.v1 import common_pb2
from scene_rpc.lifecycle import LoadResult, ManagedModel
from scene_rpc.metrics import PassMeter
from scene_rpc.ml.torch_runtime import compute_dtype, select_device
from scene_rpc.progress import Progress

log = logging.getLogger(__name__)

BackendLoader = Callable[[str, torch.device, torch.dtype], DepthBackend]

# Tiles per forward pass when DEPTH_BATCH_SIZE=0. A GPU runs a batch in little more time than one
# tile; a CPU is already saturated by one tile: the benchmark's sweep finds no reliable gain from
# batches of 2 or 4 there, and they cost memory and make cancellation coarser.
AUTO_BATCH_CUDA = 8
AUTO_BATCH_OTHER = 1


class DepthModel(ManagedModel):
    role = "depth"

    def __init__(self, settings: Settings, *, loader: BackendLoader | None = None) -> None:
        super().__init__(settings.model, retry_interval_s=settings.load_retry_s)
        self.settings = settings
        self._loader = loader or functools.partial(
            load_backend, runtime=settings.runtime, cache_dir=settings.runtime_cache_dir)
        self._backend: DepthBackend | None = None
        self._primary_error = ""
        # One inference thread: forward passes never overlap (on a CPU they would fight for the
        # same cores, on a GPU for its memory), health checks and Info keep being answered on the
        # event loop, and the pass a cancelled request was running finishes before the next.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="depth-forward")
        # Lowered for good when a batch runs out of GPU memory.
        self._batch_limit: int | None = None

    @property
    def backend(self) -> DepthBackend | None:
        return self._backend

    def _load(self) -> LoadResult:
        device, _ = select_device(self.settings.device)
        # Not bfloat16 under auto on a CPU: with Depth Anything V2 Small it moved the depth by
        # 1.1 % (median) and 54 % (99th percentile) against float32, beyond the 0.5 % and 3 %
        # bounds (scripts/bench_precision.py); DEPTH_DTYPE=bfloat16 still chooses it.
        dtype = compute_dtype(device, self.settings.dtype, bfloat16_on_cpu=False)
        fallback = self.settings.fallback_model
        self._primary_error = ""
        try:
            backend = self._loader(self.settings.model, device, dtype)
            used_fallback = False
        except Exception as primary:
            if not fallback or fallback == self.settings.model:
                raise
            self._primary_error = f"{type(primary).__name__}: {primary}"
            log.warning("primary depth model %r failed to load (%s); loading fallback %r",
                        self.settings.model, self._primary_error, fallback)
            try:
                backend = self._loader(fallback, device, dtype)
            except Exception as secondary:
                raise RuntimeError(
                    f"primary {self.settings.model!r} failed ({self._primary_error}) and fallback "
                    f"{fallback!r} failed ({type(secondary).__name__}: {secondary})"
                ) from secondary
            used_fallback = True
        self._backend = backend
        runtime = getattr(backend, "runtime", "torch")
        # The runtime rides in the device string ("cpu (openvino 2026.4.1)"): no proto change.
        device_label = backend.device if runtime == "torch" else f"{backend.device} ({runtime})"
        return LoadResult(model_id=backend.model_id, device=device_label, dtype=backend.dtype,
                          fallback=used_fallback)

    def info(self) -> common_pb2.ModelInfo:
        info = super().info()
        if info.fallback and not info.last_error:
            # Serving from the fallback is a success, but why the primary is not in use matters.
            info.last_error = f"primary model {self.requested_model_id!r} failed to load: " \
                              f"{self._primary_error}"
        return info

    @property
    def batch_size(self) -> int:
        configured = self.settings.batch_size
        if configured == 0:
            on_cuda = self._backend is not None and self._backend.device.startswith("cuda")
            configured = AUTO_BATCH_CUDA if on_cuda else AUTO_BATCH_OTHER
        return min(configured, self._batch_limit or configured)

    async def forward(self, images: Sequence[np.ndarray]) -> list[Prediction]:
        """One forward pass on the inference thread (queued behind any running one)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._forward_blocking, list(images))

    def _forward_blocking(self, images: list[np.ndarray]) -> list[Prediction]:
        assert self._backend is not None
        try:
            return self._backend.predict(images)
        except torch.OutOfMemoryError:
            if len(images) == 1:
                raise
            half = len(images) // 2
            self._batch_limit = half
            log.warning("out of memory with %d tiles per pass; continuing with %d",
                        len(images), half)
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            return self._forward_blocking(images[:half]) + self._forward_blocking(images[half:])

    async def estimate(
        self, image: np.ndarray, options: EstimateOptions
    ) -> AsyncIterator[Progress | DepthEstimate]:
        """Progress events, then exactly one DepthEstimate (loads the model first if needed)."""
        if not self.ready:
            yield Progress("load_model", 0, 1, 0.0)
        await self.ensure_loaded()
        assert self._backend is not None
        pipeline = DepthPipeline(self._backend, self.forward, batch_size=self.batch_size,
                                 max_tiles=self.settings.tile_max_count)
        meter = PassMeter()
        async for event in pipeline.run(image, options):
            if isinstance(event, Progress):
                meter.step(event.stage, event.done)
            yield event

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

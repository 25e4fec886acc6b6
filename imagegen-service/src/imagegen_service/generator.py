"""Text -> image: the request checked, the prompt templated, the API called, the image finished.

The "model" is a remote API, so loading is only a matter of knowing which model to ask for; it
still goes through ``ManagedModel`` so that Info reports it like every other service's model.
"""

from __future__ import annotations

import asyncio
import io
import logging
import time
import warnings
from dataclasses import dataclass, field

import grpc
import numpy as np
from PIL import Image

from imagegen_service.models import Size
from imagegen_service.panorama import make_panorama, seam_mad
from imagegen_service.prompts import Mode, build_prompt, check_text, clean_prompt
from imagegen_service.settings import Settings
from imagegen_service.upstream import OpenAIImages, check_api_key
from scene_rpc.errors import InvalidInput, ServiceError
from scene_rpc.images import check_size, decode_image_bytes, encode_png
from scene_rpc.lifecycle import LoadResult, ManagedModel

log = logging.getLogger(__name__)

#: Panorama output sizes a request may ask for (the width; the height is half of it).
MIN_PANORAMA_WIDTH = 256
MAX_PANORAMA_WIDTH = 8192


@dataclass(frozen=True)
class GenerationRequest:
    prompt: str
    vibe: str
    mode: Mode
    # Out of the repr, so that no error message or debug print can show it.
    api_key: str = field(repr=False)
    #: 0 x 0 = the mode's default.
    width_px: int = 0
    height_px: int = 0
    request_id: str = ""


@dataclass
class GenerationResult:
    image_png: bytes
    width_px: int
    height_px: int
    prompt_sent: str
    revised_prompt: str
    prompt: str
    vibe: str
    model_id: str
    seam_mad_before: float | None = None
    seam_mad_after: float | None = None
    timing_ms: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class _Plan:
    prompt_sent: str
    upstream_size: Size
    #: Panorama only: the size the caller asked for, or None for the natural one.
    output_size: tuple[int, int] | None


class ImageGenerator(ManagedModel):
    role = "imagegen"

    def __init__(self, settings: Settings, upstream: OpenAIImages | None = None) -> None:
        super().__init__(settings.model)
        self.settings = settings
        self.profile = settings.profile
        self.upstream = upstream or OpenAIImages(settings)

    def _load(self) -> LoadResult:
        # No weights: the model runs behind the API. dtype is that of the pixels we return.
        return LoadResult(model_id=self.profile.model_id, device="openai-api", dtype="uint8")

    def plan(self, request: GenerationRequest) -> _Plan:
        """Check everything that can be checked before spending the caller's money."""
        check_api_key(request.api_key)
        check_text("prompt", request.prompt, self.settings.prompt_limit)
        check_text("vibe", request.vibe, self.settings.max_vibe_chars)
        prompt = clean_prompt(request.prompt)
        if not prompt:
            raise InvalidInput("prompt is empty")
        built = build_prompt(prompt, request.vibe, request.mode)
        # Guaranteed by the limits above (settings.prompt_limit leaves room for the template):
        # a failure here is our bug, not the caller's, so it is not an InvalidInput.
        if len(built.text) > self.profile.max_prompt_chars:
            raise RuntimeError(
                f"templated prompt of {len(built.text)} characters over "
                f"{self.profile.model_id}'s {self.profile.max_prompt_chars}")
        if request.mode is Mode.PANORAMA:
            return _Plan(built.text, self.profile.widest, self._panorama_size(request))
        return _Plan(built.text, self._standard_size(request), None)

    def _requested(self, request: GenerationRequest) -> tuple[int, int] | None:
        width, height = request.width_px, request.height_px
        if width == 0 and height == 0:
            return None
        if width <= 0 or height <= 0:
            raise InvalidInput(
                f"size {width}x{height}: give both width_px and height_px, or neither"
            )
        return width, height

    def _standard_size(self, request: GenerationRequest) -> Size:
        requested = self._requested(request)
        if requested is None:
            return self.profile.landscape
        size = Size(*requested)
        if size not in self.profile.sizes:
            offered = ", ".join(str(s) for s in self.profile.sizes)
            raise InvalidInput(f"{self.profile.model_id} makes {offered}; not {size}")
        return size

    def _panorama_size(self, request: GenerationRequest) -> tuple[int, int] | None:
        requested = self._requested(request)
        if requested is None:
            return None
        width, height = requested
        if width != 2 * height or not MIN_PANORAMA_WIDTH <= width <= MAX_PANORAMA_WIDTH:
            raise InvalidInput(
                f"a panorama is exactly 2:1, {MIN_PANORAMA_WIDTH} to {MAX_PANORAMA_WIDTH} px "
                f"wide; not {width}x{height}"
            )
        if width * height > self.settings.max_image_pixels:
            raise InvalidInput(
                f"panorama {width}x{height} is over the limit of "
                f"{self.settings.max_image_pixels} pixels"
            )
        return requested

    async def generate(self, request: GenerationRequest, *, deadline: float) -> GenerationResult:
        """``deadline``: a ``time.monotonic()`` instant (the gRPC deadline or the service's)."""
        started = time.perf_counter()
        plan = self.plan(request)
        await self.ensure_loaded()
        upstream = await self.upstream.generate(
            prompt=plan.prompt_sent, size=plan.upstream_size, api_key=request.api_key,
            deadline=deadline,
        )
        finishing = time.perf_counter()
        # Decoding, the panorama and PNG encoding take a few hundred ms of CPU: off the loop,
        # so health checks and other calls are answered meanwhile.
        result = await asyncio.to_thread(self._finish, request, plan, upstream.data)
        result.revised_prompt = upstream.revised_prompt
        result.timing_ms = {
            **upstream.timing_ms,
            "postprocess_ms": (time.perf_counter() - finishing) * 1000,
            "total_ms": (time.perf_counter() - started) * 1000,
        }
        log.info(
            "request %s: %s %s %dx%d in %.0f ms (%d attempt%s, %s response)",
            request.request_id or "-", self.profile.model_id, request.mode.value,
            result.width_px, result.height_px, result.timing_ms["total_ms"], upstream.attempts,
            "" if upstream.attempts == 1 else "s", upstream.shape,
        )
        return result

    def _finish(self, request: GenerationRequest, plan: _Plan, data: bytes) -> GenerationResult:
        if request.mode is Mode.STANDARD:
            size = intact_rgb_png_size(data, self.settings.max_image_pixels)
            if size is not None:
                # The API's own PNG as it came: better compressed than ours, and no CPU spent.
                return self._build_result(request, plan, data, size)
        try:
            rgb = decode_image_bytes(data, max_pixels=self.settings.max_image_pixels)
        except InvalidInput as exc:
            # Not the caller's fault: the API sent something we cannot use.
            raise ServiceError(grpc.StatusCode.UNAVAILABLE,
                               f"the image API returned an unusable image: {exc}") from None
        before = after = None
        if request.mode is Mode.PANORAMA:
            before = seam_mad(rgb)
            rgb = make_panorama(rgb, band_px=self.settings.seam_band_px,
                                fit=self.settings.panorama_fit, output_size=plan.output_size)
            after = seam_mad(rgb)
        height, width = rgb.shape[:2]
        png = encode_png(np.ascontiguousarray(rgb))
        return self._build_result(request, plan, png, (width, height), before, after)

    def _build_result(self, request: GenerationRequest, plan: _Plan, png: bytes,
                size: tuple[int, int], before: float | None = None,
                after: float | None = None) -> GenerationResult:
        return GenerationResult(
            image_png=png,
            width_px=size[0],
            height_px=size[1],
            prompt_sent=plan.prompt_sent,
            revised_prompt="",
            prompt=request.prompt,
            vibe=request.vibe,
            model_id=self.profile.model_id,
            seam_mad_before=before,
            seam_mad_after=after,
        )


def intact_rgb_png_size(data: bytes, max_pixels: int) -> tuple[int, int] | None:
    """(width, height) when ``data`` is an intact RGB PNG within the size limits, upright, that
    can be returned as it is; None when it must be decoded (and so fully checked) instead."""
    try:
        with warnings.catch_warnings():
            # The pixel limit is ours (check_size below), not PIL's bomb warning.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
        with image:
            if image.format != "PNG" or image.mode != "RGB":
                return None
            if "exif" in image.info:
                # It may rotate the image: the decode path applies that.
                return None
            check_size(image.width, image.height, max_pixels)
            size = image.size
            # Chunk structure and CRCs, without decompressing the pixels.
            image.verify()
            return size
    except Exception:
        # Whatever is wrong with it, the full decode reports it properly.
        return None

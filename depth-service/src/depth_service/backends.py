"""The transformers depth models behind one small blocking interface.

A backend turns a batch of same-sized RGB crops into disparity maps (larger = nearer) at the
model's output resolution. Everything above it (tiling, alignment, blending, normalisation) is
model-agnostic and works in that disparity space, because both model families predict inverse
depth: Depth Anything an affine-invariant disparity, DepthPro a canonical inverse depth that its
field of view turns into inverse metres.
"""

from __future__ import annotations

import abc
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from scene_rpc.ml.accel import CompiledModule, model_fingerprint, resolve_runtime
from scene_rpc.settings import Runtime

log = logging.getLogger(__name__)

# Metric depth is clamped to this range before inversion, as DepthPro's reference code does.
MIN_DEPTH_M = 1e-4
MAX_DEPTH_M = 1e4
# A field of view outside this range is a degenerate prediction; clamping keeps f finite.
MIN_FOV_DEG = 5.0
MAX_FOV_DEG = 175.0


@dataclass(frozen=True)
class Prediction:
    """One crop's prediction at the model's output resolution."""

    # float32 [h, w]; larger = nearer. Inverse metres when the backend is metric.
    disparity: np.ndarray
    # Horizontal field of view the model predicted for this crop, when it predicts one.
    fov_deg: float | None = None


class TensorOutputs(torch.nn.Module):
    """A transformers depth model as pixels -> (predicted_depth[, field_of_view]): plain tensors
    in and out, the form an exported graph has, so eager and compiled runs are interchangeable."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, ...]:
        output = self.model(pixel_values=pixel_values)
        field_of_view = getattr(output, "field_of_view", None)
        if field_of_view is None:
            return (output.predicted_depth,)
        return output.predicted_depth, field_of_view


Forward = Callable[[torch.Tensor], tuple[torch.Tensor, ...]]


class DepthBackend(abc.ABC):
    """A loaded depth model. ``predict`` blocks; callers run it on the inference thread."""

    model_id: str
    #: True when ``disparity`` is in inverse metres (DepthPro with its fov head, metric DA).
    metric: bool
    #: True when each prediction carries ``fov_deg`` (DepthPro with its fov head).
    predicts_fov: bool
    #: The model's native input (height, width): the size it was trained to see.
    native_hw: tuple[int, int]
    device: str
    dtype: str
    #: What runs the forward pass: "torch", or a compiled runtime with its version.
    runtime: str = "torch"

    _forward: Forward

    def use_forward(self, forward: Forward, runtime: str, dtype: torch.dtype) -> None:
        """Run the forward pass through ``forward`` (a compiled twin of the model, computing in
        ``dtype``) from now on."""
        self._forward = forward
        self.runtime = runtime
        self.dtype = str(dtype).removeprefix("torch.")

    @abc.abstractmethod
    def predict(self, images: Sequence[np.ndarray]) -> list[Prediction]:
        """Same-shaped uint8 [H, W, 3] crops -> one prediction each."""

    @property
    def native_side(self) -> int:
        return min(self.native_hw)


# Aspect ratios (width / height) of the shapes a compiled model's global pass is resized to. A
# compiled graph bakes its input shape in and Depth Anything's processor keeps the aspect ratio,
# so without buckets every new aspect ratio needed an export of its own (10-60 s on a 2-core CPU,
# the first photo of that ratio running eagerly meanwhile). Photos come as 1:1, 4:3, 3:2 and 16:9,
# upright or not: an image is stretched to the nearest bucket, at most 6 % (between 4:3 and 3:2),
# and its prediction resized back to the image by the pipeline, as an unbucketed one is.
ASPECT_BUCKETS = (9 / 16, 2 / 3, 3 / 4, 1.0, 4 / 3, 3 / 2, 16 / 9)
# An image further than this from every bucket (a 3:1 banner) keeps its own aspect ratio: a
# stretch that large would change what the model sees; its shape is exported on first sight.
MAX_BUCKET_STRETCH = 1.12


def _multiple(value: float, multiple: int) -> int:
    return max(multiple, round(value / multiple) * multiple)


class ProcessorBackend(DepthBackend):
    """Depth Anything (V1/V2, relative or metric) and DPT: the stock AutoImageProcessor (its PIL
    backend needs no torchvision) and AutoModelForDepthEstimation.

    Compiled (:meth:`use_forward`), a processor that keeps the aspect ratio resizes each input to
    its shape bucket (:meth:`bucket_shape`) instead, so that a few graphs, exported before the
    service is ready, serve every photo.
    """

    def __init__(self, model_id: str, model, processor, device: torch.device,
                 forward: Forward | None = None, runtime: str = "torch") -> None:
        if getattr(processor, "do_pad", False):
            # Padding would shift the output against the input; no supported checkpoint pads.
            raise ValueError(f"{model_id}: processors that pad (do_pad=true) are not supported")
        self.model_id = model_id
        self.model = model
        self.processor = processor
        self._forward = forward or TensorOutputs(model)
        self.runtime = runtime
        self._device = device
        self._dtype = model.dtype
        # Depth Anything's metric checkpoints predict depth in metres; every other one disparity.
        self.metric = getattr(model.config, "depth_estimation_type", "relative") == "metric"
        self.predicts_fov = False
        size = processor.size
        self.native_hw = (int(size["height"]), int(size["width"]))
        self.device = str(device)
        self.dtype = str(self._dtype).removeprefix("torch.")
        #: Whether inputs are resized to their shape bucket (a compiled forward pass).
        self.bucketed = False

    @property
    def keeps_aspect_ratio(self) -> bool:
        return bool(getattr(self.processor, "do_resize", True)
                    and getattr(self.processor, "keep_aspect_ratio", False))

    def use_forward(self, forward: Forward, runtime: str, dtype: torch.dtype) -> None:
        super().use_forward(forward, runtime, dtype)
        self.bucketed = self.keeps_aspect_ratio

    def bucket_shape(self, height: int, width: int) -> tuple[int, int] | None:
        """The model input (height, width) an image of this size is resized to when bucketed,
        None for an aspect ratio far from every bucket.

        The processor keeps the aspect ratio and scales as little as possible: an image larger
        than the native input gets its short side to the native side, a smaller one its long
        side (a draft's 512 px image is not upscaled). The bucket keeps that choice and takes the
        nearest aspect ratio of ASPECT_BUCKETS, in the processor's multiple.
        """
        native = min(self.native_hw)
        multiple = int(getattr(self.processor, "ensure_multiple_of", 1) or 1)
        aspect = width / height
        ratio = min(ASPECT_BUCKETS, key=lambda r: abs(math.log(aspect / r)))
        if abs(math.log(aspect / ratio)) > math.log(MAX_BUCKET_STRETCH):
            return None
        # The processor's choice: the scale closer to 1 of the two that fit a side to native.
        short_fits = abs(1 - native / min(height, width)) <= abs(1 - native / max(height, width))
        stretch = max(ratio, 1 / ratio)
        long_side = native * stretch if short_fits else native
        short_side = native if short_fits else native / stretch
        long_side, short_side = _multiple(long_side, multiple), _multiple(short_side, multiple)
        return (short_side, long_side) if ratio >= 1 else (long_side, short_side)

    def bucket_shapes(self) -> list[tuple[int, int]]:
        """Every shape :meth:`bucket_shape` gives (exported before the service is ready)."""
        native = min(self.native_hw)
        shapes = []
        for ratio in ASPECT_BUCKETS:
            for scale in (4.0, 1.0 / 4.0):  # an image larger, then one smaller, than native
                height = native * scale
                shapes.append(self.bucket_shape(round(height), round(height * ratio)))
        return list(dict.fromkeys(shape for shape in shapes if shape is not None))

    @torch.inference_mode()
    def predict(self, images: Sequence[np.ndarray]) -> list[Prediction]:
        resize = {}
        bucket = self.bucket_shape(*images[0].shape[:2]) if self.bucketed else None
        if bucket is not None:
            resize = {"size": {"height": bucket[0], "width": bucket[1]},
                      "keep_aspect_ratio": False}
        inputs = self.processor(
            images=list(images), return_tensors="pt", input_data_format="channels_last", **resize
        )
        pixel_values = inputs["pixel_values"].to(self._device, self._dtype)
        output = self._forward(pixel_values)[0].float()
        if self.metric:
            output = 1.0 / output.clamp(MIN_DEPTH_M, MAX_DEPTH_M)
        return [Prediction(disparity=item) for item in output.cpu().numpy()]


class DepthProBackend(DepthBackend):
    """DepthPro. Its image processor needs torchvision (which breaks transformers here), so the
    resize/normalise and the metric post-processing follow the processor and Apple's reference code,
    from the constants in the checkpoint's preprocessor_config.json."""

    def __init__(self, model_id: str, model, preprocessor: dict, device: torch.device,
                 forward: Forward | None = None, runtime: str = "torch") -> None:
        self.model_id = model_id
        self.model = model
        self._forward = forward or TensorOutputs(model)
        self.runtime = runtime
        self._device = device
        self._dtype = model.dtype
        size = preprocessor.get("size", {"height": 1536, "width": 1536})
        self.native_hw = (int(size["height"]), int(size["width"]))
        self._rescale = float(preprocessor.get("rescale_factor", 1 / 255)) if preprocessor.get(
            "do_rescale", True) else 1.0
        do_normalize = preprocessor.get("do_normalize", True)
        mean = preprocessor.get("image_mean", [0.5, 0.5, 0.5]) if do_normalize else [0.0] * 3
        std = preprocessor.get("image_std", [0.5, 0.5, 0.5]) if do_normalize else [1.0] * 3
        self._mean = torch.tensor(mean, device=device).view(1, 3, 1, 1)
        self._std = torch.tensor(std, device=device).view(1, 3, 1, 1)
        self.predicts_fov = bool(getattr(model, "use_fov_model", False))
        # Without its fov head DepthPro's canonical inverse depth has no metric scale.
        self.metric = self.predicts_fov
        self.device = str(device)
        self.dtype = str(self._dtype).removeprefix("torch.")

    @torch.inference_mode()
    def predict(self, images: Sequence[np.ndarray]) -> list[Prediction]:
        batch = torch.from_numpy(np.stack(images)).to(self._device)
        pixels = batch.permute(0, 3, 1, 2).float() * self._rescale
        # Normalise first, then resize without antialiasing: the processor's and Apple's order.
        pixels = (pixels - self._mean) / self._std
        pixels = torch.nn.functional.interpolate(
            pixels, size=self.native_hw, mode="bilinear", align_corners=False
        )
        outputs = self._forward(pixels.to(self._dtype))
        canonical = outputs[0].float()
        if len(outputs) == 1:
            return [Prediction(disparity=item) for item in canonical.cpu().numpy()]
        fov_deg = outputs[1].float().reshape(-1)
        if bool(((fov_deg < MIN_FOV_DEG) | (fov_deg > MAX_FOV_DEG)).any()):
            log.warning("clamping predicted fields of view %s to [%s, %s] degrees",
                        fov_deg.tolist(), MIN_FOV_DEG, MAX_FOV_DEG)
        fov_deg = fov_deg.clamp(MIN_FOV_DEG, MAX_FOV_DEG)
        # inverse depth = canonical * width / f_px, and width / f_px = 2 tan(fov / 2) for any width.
        width_over_focal = 2.0 * torch.tan(torch.deg2rad(fov_deg) / 2.0)
        inverse_depth = canonical * width_over_focal.view(-1, 1, 1)
        inverse_depth = inverse_depth.clamp(1.0 / MAX_DEPTH_M, 1.0 / MIN_DEPTH_M)
        return [
            Prediction(disparity=item, fov_deg=float(fov))
            for item, fov in zip(inverse_depth.cpu().numpy(), fov_deg.tolist(), strict=True)
        ]


def focal_length_px(fov_deg: float, width_px: int) -> float:
    """Pinhole focal length of an image ``width_px`` wide with this horizontal field of view."""
    return 0.5 * width_px / math.tan(math.radians(fov_deg) / 2.0)


SUPPORTED_MODEL_TYPES = ("depth_anything", "dpt", "depth_pro")


def load_backend(model_id: str, device: torch.device, dtype: torch.dtype, *,
                 runtime: Runtime | str = Runtime.TORCH, cache_dir: Path | str | None = None,
                 threads: int | None = None) -> DepthBackend:
    """Load ``model_id`` (hub id or local directory) through transformers' Auto classes, to
    compute in ``dtype``.

    With a compiled ``runtime`` (see ``scene_rpc.ml.accel``) the forward pass runs through it:
    the weights load in float32 (the exported graph's), ``dtype`` is the graph's compute
    precision, and the graph of the native input shape is exported (or read back from
    ``cache_dir``) and compiled here, inside the load; other shapes are compiled on first sight.
    ``auto`` is OpenVINO on a CPU and falls back to eager PyTorch when the export fails. Eagerly,
    the weights are held in ``dtype``.

    DepthPro always runs eagerly, whatever ``runtime`` says: compiled (piece by piece: its
    ~950M-parameter graph at 1536 px does not export whole) it gained 1.17x on one pass on the
    2-core CPU, below the 1.3x a runtime must gain, for 5-8 GB more memory and patches of
    transformers internals, so that path was taken out.
    """
    from transformers import AutoConfig, AutoImageProcessor, AutoModelForDepthEstimation
    from transformers.image_processing_utils import ImageProcessingMixin

    config = AutoConfig.from_pretrained(model_id)
    if config.model_type not in SUPPORTED_MODEL_TYPES:
        raise ValueError(
            f"{model_id} is a {config.model_type!r} model; supported: "
            f"{', '.join(SUPPORTED_MODEL_TYPES)}"
        )
    chosen = resolve_runtime(runtime, device)
    if config.model_type == "depth_pro" and chosen is not Runtime.TORCH:
        if Runtime(runtime) is not Runtime.AUTO:
            log.info("%s: DepthPro runs on eager PyTorch; runtime %s applies to the other depth "
                     "models", model_id, chosen.value)
        chosen = Runtime.TORCH
    if chosen is not Runtime.TORCH and cache_dir is None:
        raise ValueError(f"runtime {chosen.value!r} needs a cache directory")
    weights_dtype = dtype if chosen is Runtime.TORCH else torch.float32
    model = AutoModelForDepthEstimation.from_pretrained(model_id, config=config,
                                                        dtype=weights_dtype)
    model = model.to(device).eval()
    if config.model_type == "depth_pro":
        preprocessor, _ = ImageProcessingMixin.get_image_processor_dict(model_id)
        backend: DepthBackend = DepthProBackend(model_id, model, preprocessor, device)
    else:
        backend = ProcessorBackend(model_id, model, AutoImageProcessor.from_pretrained(model_id),
                                   device)
    if chosen is Runtime.TORCH:
        return backend
    key = model_fingerprint(model_id, config, weights_dtype)
    threads = threads or torch.get_num_threads()
    try:
        compiled = CompiledModule(TensorOutputs(backend.model), chosen, cache_dir=cache_dir,
                                  key=key, threads=threads, dtype=dtype)
        shapes = [backend.native_hw]
        if isinstance(backend, ProcessorBackend) and backend.keeps_aspect_ratio:
            shapes += backend.bucket_shapes()
        examples = [[torch.zeros(1, 3, *shape, dtype=backend.model.dtype,
                                 device=backend.model.device)] for shape in dict.fromkeys(shapes)]
        # Every shape a photo's global pass can take is exported now, inside the load, so before
        # the service reads SERVING (once: later starts find them on the disk); the native square
        # (the shape of every tile) is compiled now, a bucket from the disk on first use (about
        # 0.3 GB resident per compiled graph). Other shapes (a banner) export on first sight.
        compiled.export_ahead(examples)
        compiled.prepare(*examples[0])
    except Exception:
        if Runtime(runtime) is not Runtime.AUTO:
            raise
        # auto never costs the service its model: a graph that cannot be exported or compiled
        # leaves the model serving on eager PyTorch (logged); an explicit runtime fails the load.
        log.warning("%s: the %s export failed; it runs on eager PyTorch", model_id, chosen.value,
                    exc_info=True)
        return backend
    backend.use_forward(compiled, compiled.label, dtype)
    return backend

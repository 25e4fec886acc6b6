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


class ProcessorBackend(DepthBackend):
    """Depth Anything (V1/V2, relative or metric) and DPT: the stock AutoImageProcessor (its PIL
    backend needs no torchvision) and AutoModelForDepthEstimation."""

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

    @torch.inference_mode()
    def predict(self, images: Sequence[np.ndarray]) -> list[Prediction]:
        inputs = self.processor(
            images=list(images), return_tensors="pt", input_data_format="channels_last"
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
        # The native square (the shape of every tile) now; other shapes on first sight.
        height, width = backend.native_hw
        compiled.prepare(torch.zeros(1, 3, height, width, dtype=backend.model.dtype,
                                     device=backend.model.device))
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

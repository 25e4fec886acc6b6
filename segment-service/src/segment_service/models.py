"""The service's two models, each a :class:`scene_rpc.lifecycle.ManagedModel`: loaded lazily,
once, behind a lock; a failure remembered, reported by Info and retried later.

Forward passes run on the segmenter's single inference thread (see ``segmenter.py``), never
concurrently.
"""

from __future__ import annotations

import logging
import threading

from scene_rpc.lifecycle import LoadResult, ManagedModel
from scene_rpc.settings import Runtime
from segment_service.categories import ade20k_lookup
from segment_service.sam_predictor import Sam2Predictor
from segment_service.semantic import SemanticPredictor
from segment_service.settings import CPU_POINTS_PER_BATCH, Settings

log = logging.getLogger(__name__)

# transformers resolves its lazy top-level names without a lock: two threads importing from it at
# once can fail with "cannot import name 'AutoConfig'". The two models therefore load one at a time.
_LOAD_LOCK = threading.Lock()

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


def _dtype_name(dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _device_label(device, compiled) -> str:
    """The device as GetInfo reports it, with the compiled runtime when one runs the model."""
    return str(device) if compiled is None else f"{device} ({compiled.label})"


class SamModel(ManagedModel):
    role = "sam"

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings.sam_model, retry_interval_s=settings.load_retry_s)
        self._device_preference = settings.device
        self._settings = settings
        self.predictor: Sam2Predictor | None = None

    def _load(self) -> LoadResult:
        with _LOAD_LOCK:
            return self._load_unlocked()

    def _load_unlocked(self) -> LoadResult:
        import torch
        from transformers import Sam2Model
        from transformers.image_processing_base import ImageProcessingMixin

        from scene_rpc.ml.accel import compile_or_none, model_fingerprint, resolve_runtime
        from scene_rpc.ml.torch_runtime import compute_dtype, select_device
        from segment_service.compiled import ImageEncoder

        device, _ = select_device(self._device_preference)
        dtype = compute_dtype(device, self._settings.dtype)
        if dtype == torch.float16 and device.type == "cuda" and torch.cuda.is_bf16_supported():
            # SAM2 is trained and released for bfloat16 autocast; float16 overflows in Hiera.
            dtype = torch.bfloat16
        runtime = resolve_runtime(self._settings.runtime, device)
        # A compiled runtime exports float32 weights and computes in ``dtype`` itself.
        weights_dtype = dtype if runtime is Runtime.TORCH else torch.float32
        model = Sam2Model.from_pretrained(self.requested_model_id,
                                          dtype=weights_dtype).to(device).eval()
        # Read Sam2ImageProcessor's config as a plain dict: the class itself needs torchvision.
        processor, _ = ImageProcessingMixin.get_image_processor_dict(self.requested_model_id)
        input_size = int(model.config.prompt_encoder_config.image_size)
        declared = (processor.get("size") or {}).get("height", input_size)
        if declared != input_size:
            log.warning("SAM2 processor size %s differs from the model's input %s; using %s",
                        declared, input_size, input_size)
        self.predictor = Sam2Predictor(
            model,
            input_size=input_size,
            mean=processor.get("image_mean", _IMAGENET_MEAN),
            std=processor.get("image_std", _IMAGENET_STD),
            rescale_factor=processor.get("rescale_factor", 1 / 255),
            device=device,
            dtype=weights_dtype,
        )
        # The image encoder (one pass per crop) and the mask decoder (one pass per prompt batch)
        # through a compiled runtime where it pays.
        example = torch.zeros(1, 3, input_size, input_size, dtype=weights_dtype, device=device)
        self.predictor.encoder = compile_or_none(
            ImageEncoder(model), runtime, cache_dir=self._settings.runtime_cache_dir,
            key=model_fingerprint(self.requested_model_id, model.config, weights_dtype)
            + "-encoder",
            threads=self._settings.threads or torch.get_num_threads(),
            example=[example], dtype=dtype,
            name=f"SAM2 image encoder of {self.requested_model_id}")
        if runtime is not Runtime.TORCH:
            self._compile_decoder(model, runtime, example, weights_dtype, dtype)
        encoder_dtype = weights_dtype if self.predictor.encoder is None else dtype
        return LoadResult(model_id=self.requested_model_id,
                          device=_device_label(device, self.predictor.encoder),
                          dtype=_dtype_name(encoder_dtype))

    def _compile_decoder(self, model, runtime, example, weights_dtype, dtype) -> None:
        """The prompt encoder and mask decoder through ``runtime``, at the one prompt batch size
        the service decodes on a CPU (a last, smaller batch is padded); eager if it fails."""
        import torch

        from scene_rpc.ml.accel import compile_or_none, model_fingerprint
        from segment_service.compiled import CompiledDecoding, PromptDecoder

        assert self.predictor is not None
        batch = self._settings.points_per_batch or CPU_POINTS_PER_BATCH
        with torch.inference_mode():
            # The embeddings' shapes (the graph bakes them in), from the encoder itself.
            shapes = [
                e.shape for e in (self.predictor.encoder(example) if self.predictor.encoder
                                  else model.get_image_embeddings(example))]
        embeddings = [torch.zeros(shape, dtype=weights_dtype) for shape in shapes]
        decoder = compile_or_none(
            PromptDecoder(model), runtime, cache_dir=self._settings.runtime_cache_dir,
            key=model_fingerprint(self.requested_model_id, model.config, weights_dtype)
            + "-decoder",
            threads=self._settings.threads or torch.get_num_threads(),
            example=[*embeddings, torch.zeros(1, batch, 1, 2, dtype=weights_dtype)],
            dtype=dtype, name=f"SAM2 mask decoder of {self.requested_model_id}")
        if decoder is not None:
            self.predictor.model = CompiledDecoding(model, decoder, batch)


class SemanticModel(ManagedModel):
    role = "semantic"

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings.semantic_model, retry_interval_s=settings.load_retry_s)
        self._device_preference = settings.device
        self._settings = settings
        self.predictor: SemanticPredictor | None = None
        # ADE20K index -> the class name as this model's config spells it, for responses.
        self.label_names: dict[int, str] = {}

    def _load(self) -> LoadResult:
        with _LOAD_LOCK:
            return self._load_unlocked()

    def _load_unlocked(self) -> LoadResult:
        import numpy as np
        import torch
        from transformers import (
            AutoConfig,
            AutoImageProcessor,
            AutoModelForSemanticSegmentation,
            AutoModelForUniversalSegmentation,
        )
        from transformers.models.auto.modeling_auto import (
            MODEL_FOR_SEMANTIC_SEGMENTATION_MAPPING_NAMES,
            MODEL_FOR_UNIVERSAL_SEGMENTATION_MAPPING_NAMES,
        )

        from scene_rpc.ml.accel import compile_or_none, model_fingerprint, resolve_runtime
        from scene_rpc.ml.torch_runtime import compute_dtype, select_device
        from segment_service.compiled import SegmentationHeads

        config = AutoConfig.from_pretrained(self.requested_model_id)
        if config.model_type == "oneformer":
            raise ValueError("OneFormer needs a text task input per image; use MaskFormer, "
                             "Mask2Former or a semantic-segmentation model")
        if config.model_type in MODEL_FOR_UNIVERSAL_SEGMENTATION_MAPPING_NAMES:
            model_class = AutoModelForUniversalSegmentation
        elif config.model_type in MODEL_FOR_SEMANTIC_SEGMENTATION_MAPPING_NAMES:
            model_class = AutoModelForSemanticSegmentation
        else:
            raise ValueError(
                f"{self.requested_model_id!r} is a {config.model_type!r} model, not a semantic or "
                "universal segmentation model"
            )
        # Checked before the weights load: a model without ADE20K labels cannot be categorised.
        lookup = ade20k_lookup(config.id2label)
        device, _ = select_device(self._device_preference)
        dtype = compute_dtype(device, self._settings.dtype)
        runtime = resolve_runtime(self._settings.runtime, device)
        # A compiled runtime exports float32 weights and computes in ``dtype`` itself.
        weights_dtype = dtype if runtime is Runtime.TORCH else torch.float32
        model = model_class.from_pretrained(self.requested_model_id,
                                            dtype=weights_dtype).to(device).eval()
        processor = AutoImageProcessor.from_pretrained(self.requested_model_id)
        self.label_names = {int(lookup[int(i)]): name for i, name in config.id2label.items()}
        self.predictor = SemanticPredictor(model, processor, lookup, device=device,
                                           dtype=weights_dtype)
        heads = SegmentationHeads(model, universal=model_class is AutoModelForUniversalSegmentation)
        example = processor(images=np.zeros((512, 512, 3), np.uint8), return_tensors="pt")
        compiled = compile_or_none(
            heads, runtime, cache_dir=self._settings.runtime_cache_dir,
            key=model_fingerprint(self.requested_model_id, config, weights_dtype) + "-heads",
            threads=self._settings.threads or torch.get_num_threads(),
            example=[example["pixel_values"].to(device, weights_dtype)], dtype=dtype,
            name=f"semantic model {self.requested_model_id}")
        if compiled is not None:
            self.predictor.forward = heads.outputs_from(compiled)
        return LoadResult(model_id=self.requested_model_id, device=_device_label(device, compiled),
                          dtype=_dtype_name(weights_dtype if compiled is None else dtype))

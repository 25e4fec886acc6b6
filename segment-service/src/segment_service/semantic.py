"""The semantic pass: any transformers semantic or universal segmentation model trained on
ADE20K-150, turned into a per-pixel ADE20K class map at the input's resolution.

The model's own image processor prepares the input (its PIL backend works without torchvision) and
its ``post_process_semantic_segmentation`` gives per-class scores at the model's resolution; the
upsampling to the input size is done here, a few classes at a time, because the processor's own
resize materialises all 150 score planes at full size (1.2 GB at 2048x1024).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

# Score planes upsampled at once: bounds memory to CHUNK x H x W floats.
UPSAMPLE_CHUNK = 16
# Columns copied from the opposite edge onto each side of a panorama, as a fraction of its
# width, so the model sees across the seam.
PANORAMA_WRAP_FRACTION = 0.125


def candidate_classes(scores: torch.Tensor) -> torch.Tensor:
    """Indices of the classes that can win the argmax anywhere after bilinear upsampling.

    Every upsampled value interpolates one 2x2 window of the coarse map, so it lies between the
    window's min and max. A class whose window max is below some other class's window min loses
    everywhere in that window; a class that loses in every window is skipped. Exact, and in a
    real scene it leaves a handful of the 150 classes.
    """
    padded = F.pad(scores[None], (0, 1, 0, 1), mode="replicate")
    window_max = F.max_pool2d(padded, kernel_size=2, stride=1)[0]
    window_min = -F.max_pool2d(-padded, kernel_size=2, stride=1)[0]
    best_lower_bound = window_min.max(dim=0).values
    can_win = (window_max >= best_lower_bound[None]).flatten(1).any(dim=1)
    return torch.nonzero(can_win).flatten()


def upsample_argmax(scores: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """argmax over classes of ``scores`` [C, h, w] bilinearly resized to ``size``; int64 [H, W].

    Only the classes that can win are resized, a few at a time.
    """
    scores = scores.to(torch.float32)
    candidates = candidate_classes(scores)
    best_value = torch.full(size, -torch.inf, dtype=torch.float32, device=scores.device)
    best_index = torch.zeros(size, dtype=torch.int64, device=scores.device)
    for first in range(0, len(candidates), UPSAMPLE_CHUNK):
        classes = candidates[first:first + UPSAMPLE_CHUNK]
        resized = F.interpolate(scores[None, classes], size=size, mode="bilinear",
                                align_corners=False)[0]
        value, index = resized.max(dim=0)
        better = value > best_value
        best_value = torch.where(better, value, best_value)
        best_index = torch.where(better, classes[index], best_index)
    return best_index


def nearest_argmax(scores: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """argmax at the model's resolution, repeated to ``size`` (no per-pixel boundaries)."""
    coarse = scores.argmax(dim=0)
    height, width = size
    rows = (torch.arange(height, device=scores.device) * coarse.shape[0]) // height
    cols = (torch.arange(width, device=scores.device) * coarse.shape[1]) // width
    return coarse[rows][:, cols]


class SemanticPredictor:
    """A loaded semantic model, its image processor and its class -> ADE20K index lookup."""

    def __init__(self, model, processor, ade20k_lookup: np.ndarray, *, device: torch.device,
                 dtype: torch.dtype) -> None:
        self.model = model
        self.processor = processor
        self.lookup = torch.as_tensor(ade20k_lookup, dtype=torch.int64, device=device)
        self.device = device
        self.dtype = dtype
        # A compiled twin (pixels -> an object with the logits the post-processing reads), or
        # None: the model itself.
        self.forward = None

    @torch.inference_mode()
    def scores(self, rgb: np.ndarray) -> torch.Tensor:
        """Per-class scores [C, h, w] (model class order) at the model's output resolution."""
        inputs = self.processor(images=rgb, return_tensors="pt")
        inputs = {
            k: (v.to(self.device, self.dtype) if k == "pixel_values" else v.to(self.device))
            for k, v in inputs.items()
        }
        if self.forward is not None:
            outputs = self.forward(inputs["pixel_values"])
        else:
            outputs = self.model(**inputs)
        processed = self.processor.post_process_semantic_segmentation(
            outputs, return_segmentation_scores=True
        )
        return processed[0].segmentation_scores.to(torch.float32)

    def class_map(self, rgb: np.ndarray, *, panorama: bool = False,
                  full_resolution: bool = True) -> np.ndarray:
        """ADE20K class index per pixel, int16 [H, W].

        ``full_resolution`` upsamples the scores before the argmax (smooth class boundaries);
        without it the coarse argmax is repeated, enough where SAM2 masks draw the boundaries.
        """
        height, width = rgb.shape[:2]
        pad = int(width * PANORAMA_WRAP_FRACTION) if panorama else 0
        if pad:
            rgb = np.concatenate([rgb[:, width - pad:], rgb, rgb[:, :pad]], axis=1)
        scores = self.scores(rgb)
        size = (height, width + 2 * pad)
        classes = upsample_argmax(scores, size) if full_resolution else nearest_argmax(scores, size)
        classes = classes[:, pad:pad + width]
        return self.lookup[classes].to(torch.int16).cpu().numpy()

"""SAM2's model side, owned here because transformers' ``Sam2ImageProcessor`` needs torchvision:
preprocessing, image embeddings, batched point-prompt decoding."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F


class Sam2Predictor:
    """Wraps a loaded ``Sam2Model`` with SAM2's own preprocessing.

    SAM2 resizes every input to its square input size without keeping the aspect ratio and
    without padding (as ``Sam2ImageProcessor`` does), so its low-resolution masks map back to the
    crop by a plain resize, and grid points map to model pixels by ``grid * input_size``.
    """

    def __init__(
        self,
        model,
        *,
        input_size: int,
        mean: Sequence[float],
        std: Sequence[float],
        rescale_factor: float,
        device: torch.device,
        dtype: torch.dtype,
    ) -> None:
        self.model = model
        self.input_size = input_size
        self.device = device
        self.dtype = dtype
        # A compiled twin of the image encoder (scene_rpc.ml.accel), or None: the model's own.
        self.encoder = None
        self._mean = torch.tensor(mean, device=device, dtype=torch.float32).view(1, 3, 1, 1)
        self._std = torch.tensor(std, device=device, dtype=torch.float32).view(1, 3, 1, 1)
        self._rescale = rescale_factor

    def preprocess(self, rgb: np.ndarray) -> torch.Tensor:
        image = torch.tensor(rgb, device=self.device)
        image = image.permute(2, 0, 1).unsqueeze(0).to(torch.float32)
        size = (self.input_size, self.input_size)
        if tuple(image.shape[-2:]) != size:
            image = F.interpolate(image, size=size, mode="bilinear", align_corners=False,
                                  antialias=True)
        image = (image * self._rescale - self._mean) / self._std
        return image.to(self.dtype)

    @torch.inference_mode()
    def embed(self, rgb: np.ndarray) -> list[torch.Tensor]:
        pixels = self.preprocess(rgb)
        if self.encoder is not None:
            embeddings = [e.to(self.device, self.dtype) for e in self.encoder(pixels)]
        else:
            embeddings = self.model.get_image_embeddings(pixels)
        if self.device.type == "cuda":
            # Stage timings must include the kernels, not just their launch.
            torch.cuda.synchronize(self.device)
        return embeddings

    @torch.inference_mode()
    def decode(
        self, embeddings: list[torch.Tensor], points: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Point prompts [B, 2] in [0, 1] -> (low-res mask logits [B*3, h, w], IoU [B*3]), float32.

        Each point is its own prompt with SAM's three candidate masks (whole, part, subpart).
        """
        # float32 even for a bfloat16 model: the prompt encoder normalises the coordinates before
        # casting, which keeps their precision.
        coords = (points * self.input_size).to(self.device, torch.float32)
        input_points = coords[None, :, None, :]  # [image, prompt, point, xy]
        input_labels = torch.ones(input_points.shape[:3], dtype=torch.int64, device=self.device)
        outputs = self.model(
            image_embeddings=embeddings,
            input_points=input_points,
            input_labels=input_labels,
            multimask_output=True,
        )
        logits = outputs.pred_masks[0].flatten(0, 1).to(torch.float32)
        iou = outputs.iou_scores[0].flatten(0, 1).to(torch.float32)
        return logits, iou

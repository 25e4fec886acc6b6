"""The segment models as plain tensor functions, so that scene_rpc.accel can export them to a
compiled runtime (OpenVINO, ONNX Runtime): pixels in, a tuple of tensors out."""

from __future__ import annotations

from types import SimpleNamespace

import torch


class ImageEncoder(torch.nn.Module):
    """SAM2's image encoder as pixels -> a tuple of tensors: what an exporter can trace."""

    def __init__(self, model) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(self.model.get_image_embeddings(pixel_values))


class SegmentationHeads(torch.nn.Module):
    """A semantic or universal segmentation model as pixels -> the logits its image processor's
    post-processing reads, as a tuple; :meth:`outputs_from` turns a compiled twin's tuple back
    into the attributes the post-processing expects."""

    def __init__(self, model, *, universal: bool) -> None:
        super().__init__()
        self.model = model
        self.names = (("class_queries_logits", "masks_queries_logits") if universal
                      else ("logits",))

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, ...]:
        outputs = self.model(pixel_values=pixel_values)
        return tuple(getattr(outputs, name) for name in self.names)

    def outputs_from(self, compiled):
        def forward(pixel_values: torch.Tensor) -> SimpleNamespace:
            return SimpleNamespace(**dict(zip(self.names, compiled(pixel_values), strict=True)))
        return forward

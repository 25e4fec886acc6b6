"""The segment models as plain tensor functions, so that scene_rpc.ml.accel can export them to a
compiled runtime (OpenVINO): pixels in, a tuple of tensors out."""

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


class PromptDecoder(torch.nn.Module):
    """SAM2's prompt encoder and mask decoder as tensors -> tensors: one image's three embeddings
    (the two high-resolution feature maps, then the image embedding) and a batch of one-point
    foreground prompts [1, B, 1, 2] in model pixels -> (low-res mask logits [1, B, 3, h, w],
    predicted IoU [1, B, 3])."""

    def __init__(self, model) -> None:
        super().__init__()
        self.model = model

    def forward(self, features_s0: torch.Tensor, features_s1: torch.Tensor,
                embedding: torch.Tensor, coords: torch.Tensor) -> tuple[torch.Tensor, ...]:
        labels = torch.ones(coords.shape[:3], dtype=torch.int64, device=coords.device)
        outputs = self.model(image_embeddings=[features_s0, features_s1, embedding],
                             input_points=coords, input_labels=labels, multimask_output=True)
        return outputs.pred_masks, outputs.iou_scores


class CompiledDecoding:
    """Stands in for a ``Sam2Model`` where the predictor decodes point prompts: a batch of
    one-point foreground prompts runs through a compiled :class:`PromptDecoder`, padded to the one
    batch size it was compiled for (each prompt is decoded independently of the others in its
    batch, so the padding changes no result); any other call, and every other attribute, is the
    model's own."""

    def __init__(self, model, compiled, batch_size: int) -> None:
        self.model = model
        self.compiled = compiled
        self.batch_size = batch_size

    def __getattr__(self, name: str):
        # Only reached for attributes this object lacks; "model" itself (absent while copy or
        # pickle builds an instance) must not recurse.
        if name == "model":
            raise AttributeError(name)
        return getattr(self.model, name)

    def __call__(self, *, image_embeddings=None, input_points=None, input_labels=None,
                 multimask_output: bool = True, **others):
        simple = (image_embeddings is not None and input_points is not None and not others
                  and multimask_output and input_points.shape[0] == 1
                  and input_points.shape[2] == 1 and input_points.shape[1] <= self.batch_size
                  and (input_labels is None or bool((input_labels == 1).all())))
        if not simple:
            return self.model(image_embeddings=image_embeddings, input_points=input_points,
                              input_labels=input_labels, multimask_output=multimask_output,
                              **others)
        count = input_points.shape[1]
        padded = torch.nn.functional.pad(input_points, (0, 0, 0, 0, 0, self.batch_size - count))
        masks, iou = self.compiled(*image_embeddings, padded)
        return SimpleNamespace(pred_masks=masks[:, :count], iou_scores=iou[:, :count])

"""DepthPro through a compiled runtime, piece by piece.

The whole model does not export here: at 1536 px its trace pushes 35 patches through one ViT-L at
once, and an OpenVINO export of it ran for over 14 minutes at 8.5 GiB without finishing (README).
Its time sits in two places, measured eagerly on the 2-core CPU for one 1536 px pass (171 s): the
three ViT-L encoders (the patch encoder's 35 patches 127 s, the image and field-of-view encoders
4 s each) and the fusion stage with the depth head (28 s: 3x3 convolutions at up to 768 x 768).
So those pieces are exported on their own:

- each ViT at a batch of one image (DepthPro feeds it fixed-size squares: 384 px patches and the
  downsampled whole image), called once per image of a batch, so one small graph serves every
  batch size and the trace never holds 35 patches' activations;
- the fusion stage and head as one graph from the neck's features to the canonical inverse depth.
  They are convolutions only, so the graph is exported at an eighth of the features' size and
  serves the real size through OpenVINO's dynamic dimensions: exported at full size, the trace
  held every 768 x 768 x 256 intermediate and peaked at 19.6 GB.

Hence OpenVINO only (ONNX Runtime would need the decoder exported with dynamic axes).

What stays eager is light: the resampling, patch splitting and merging, the neck and the field of
view head. :class:`PiecewiseForward` is DepthProForDepthEstimation's forward with the decoder as a
callable; the ViT stand-ins replace the encoders' ``model`` attributes, which the transformers
code calls.

The gain is small because the ViTs are compute-bound in float32 either way: one pass 125-128 s
against 148 s eager on the quiet 2-core CPU (1.17x, within 6.4e-6), so ``auto`` does not choose it
(``backends.DEPTH_PRO_AUTO_COMPILED``); ``DEPTH_RUNTIME=openvino`` does.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from transformers.modeling_outputs import BaseModelOutputWithPooling

from scene_rpc.accel import CompiledModule, Runtime, fingerprint

log = logging.getLogger(__name__)


class VitTensors(torch.nn.Module):
    """One of DepthPro's ViTs as pixels -> (last hidden state, the hidden states DepthPro reads)."""

    def __init__(self, vit: torch.nn.Module, hidden_state_ids: Sequence[int]) -> None:
        super().__init__()
        self.vit = vit
        self.hidden_state_ids = tuple(hidden_state_ids)

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, ...]:
        output = self.vit(pixel_values=pixel_values,
                          output_hidden_states=bool(self.hidden_state_ids))
        kept = tuple(output.hidden_states[i] for i in self.hidden_state_ids)
        return (output.last_hidden_state, *kept)


class CompiledVit(torch.nn.Module):
    """Stands in for a ViT inside DepthPro's encoders: each image of the batch runs through the
    compiled :class:`VitTensors`; the output carries the last hidden state and, when asked for,
    the hidden states DepthPro reads (the others are None: the patch encoder indexes two)."""

    def __init__(self, compiled: Callable, hidden_state_ids: Sequence[int],
                 hidden_state_count: int) -> None:
        super().__init__()
        self.compiled = compiled
        self.hidden_state_ids = tuple(hidden_state_ids)
        self.hidden_state_count = hidden_state_count

    def forward(self, pixel_values: torch.Tensor, output_hidden_states: bool | None = False,
                output_attentions: bool | None = False, **_) -> BaseModelOutputWithPooling:
        if output_attentions:
            raise ValueError("a compiled DepthPro encoder does not return attentions")
        per_image = [self.compiled(image[None]) for image in pixel_values]
        hidden_states = None
        if output_hidden_states:
            states: list[torch.Tensor | None] = [None] * self.hidden_state_count
            for slot, index in enumerate(self.hidden_state_ids, start=1):
                states[index] = torch.cat([outputs[slot] for outputs in per_image])
            hidden_states = tuple(states)
        return BaseModelOutputWithPooling(
            last_hidden_state=torch.cat([outputs[0] for outputs in per_image]),
            hidden_states=hidden_states)


class Decoder(torch.nn.Module):
    """DepthPro's fusion stage and depth head: the neck's features -> (canonical inverse depth,)."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.fusion_stage = model.fusion_stage
        self.head = model.head

    def forward(self, *features: torch.Tensor) -> tuple[torch.Tensor]:
        return (self.head(self.fusion_stage(list(features))[-1]),)


class PiecewiseForward(torch.nn.Module):
    """DepthProForDepthEstimation's forward (pixels -> (predicted_depth[, field_of_view])) with
    the decoder as a callable: its compiled twin, or :class:`Decoder` itself."""

    def __init__(self, model: torch.nn.Module, decoder: Callable,
                 pieces: dict[str, CompiledModule] | None = None) -> None:
        super().__init__()
        self.model = model
        self.decoder = decoder
        #: The compiled pieces by name (tests and logs read how each was obtained).
        self.pieces = pieces or {}

    @property
    def label(self) -> str:
        """The runtime and its version, as every piece reports it."""
        return next(iter(self.pieces.values())).label

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, ...]:
        features = self.model.depth_pro(pixel_values=pixel_values).features
        (predicted_depth,) = self.decoder(*features)
        if not self.model.use_fov_model:
            return (predicted_depth,)
        # The frozen encoder features feed the field-of-view head, as in transformers' forward.
        field_of_view = self.model.fov_model(pixel_values=pixel_values,
                                             global_features=features[0].detach())
        return predicted_depth, field_of_view


def _encoders(model: torch.nn.Module) -> dict[str, tuple[torch.nn.Module, int, tuple[int, ...]]]:
    """name -> (the encoder whose ``model`` is a ViT, its input side, the hidden states read)."""
    config = model.config
    encoder = model.depth_pro.encoder
    encoders = {
        # The patch encoder's ViT sees patch_size squares; DepthPro reads two hidden states of
        # it (+1: hidden_states[0] is the embeddings' output).
        "patch": (encoder.patch_encoder, config.patch_size,
                  tuple(i + 1 for i in config.intermediate_hook_ids)),
        "image": (encoder.image_encoder, config.image_model_config.image_size, ()),
    }
    if model.use_fov_model:
        encoders["fov"] = (model.fov_model.fov_encoder, config.fov_model_config.image_size, ())
    return encoders


def _feature_shapes(model: torch.nn.Module, height: int, width: int) -> list[torch.Size]:
    """The shapes of the neck's features for one (height x width) image, found without running
    the ViTs: propagated through fake tensors."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode(allow_non_fake_inputs=True) as mode, torch.no_grad():
        pixels = mode.from_tensor(torch.zeros(1, 3, height, width, dtype=model.dtype))
        features = model.depth_pro(pixel_values=pixels).features
    return [feature.shape for feature in features]


def _reduced(shapes: Sequence[torch.Size], factor: int = 8) -> list[tuple[int, ...]]:
    """The features' shapes with their sides divided by ``factor`` (or the largest power of two
    that divides the smallest side), keeping the factor of two between consecutive features."""
    smallest = min(min(shape[-2:]) for shape in shapes)
    while factor > 1 and smallest % factor:
        factor //= 2
    return [(*shape[:-2], shape[-2] // factor, shape[-1] // factor) for shape in shapes]


def compile_depth_pro(model: torch.nn.Module, runtime: Runtime, *, native_hw: tuple[int, int],
                      cache_dir: Path | str, key: str, threads: int) -> PiecewiseForward:
    """DepthPro's forward with its ViTs and decoder running through ``runtime``.

    Every piece is exported (or read back from ``cache_dir``) and compiled here, before any is
    installed, so an export that fails leaves ``model`` untouched (and eager) behind the raised
    error. Afterwards the model's encoders call the compiled ViTs.
    """
    dtype = model.dtype

    if runtime is not Runtime.OPENVINO:
        raise ValueError(f"DepthPro compiles through openvino only, not {runtime.value}")

    def compiled_piece(name: str, module: torch.nn.Module, *example: torch.Tensor,
                       any_shape: bool = False):
        piece = CompiledModule(module, runtime, cache_dir=cache_dir,
                               key=fingerprint(key, "depth-pro", name), threads=threads,
                               any_shape=any_shape)
        piece.prepare(*example)
        pieces[name] = piece
        return piece

    pieces: dict[str, CompiledModule] = {}
    stand_ins = {}
    for name, (encoder, side, hidden_state_ids) in _encoders(model).items():
        vit = encoder.model
        example = torch.zeros(1, 3, side, side, dtype=dtype)
        piece = compiled_piece(f"{name}-vit", VitTensors(vit, hidden_state_ids), example)
        stand_ins[name] = (encoder, CompiledVit(piece, hidden_state_ids,
                                                vit.config.num_hidden_layers + 1))
    shapes = _feature_shapes(model, *native_hw)
    decoder = compiled_piece("decoder", Decoder(model),
                             *(torch.zeros(shape, dtype=dtype) for shape in _reduced(shapes)),
                             any_shape=True)
    for name, (encoder, stand_in) in stand_ins.items():
        encoder.model = stand_in
        # Each ViT only ever sees its one square, now compiled: its torch weights (about 1.2 GB
        # each for ViT-L, beside OpenVINO's copy) are dropped.
        pieces[f"{name}-vit"].release_module()
    log.info("DepthPro compiled piece by piece (%s): ViTs %s, decoder at %s",
             runtime.value, ", ".join(stand_ins), [tuple(s) for s in shapes])
    return PiecewiseForward(model, decoder, pieces)

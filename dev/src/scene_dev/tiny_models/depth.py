"""Tiny random-weight depth models of the real architectures: Depth Anything V2 and DepthPro.

The configs keep every structural trait of the production checkpoints (DINOv2 backbones, the DPT
neck with four reassemble stages, DepthPro's three-scale patch encoder and its field-of-view head,
the processor settings) and only shrink widths, depths and the native input size, so that the
service runs the same code path on them in milliseconds.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

# Native input side of the tiny models: small, so tests can force tiling on 100-200 px images.
DEPTH_ANYTHING_NATIVE_PX = 56  # 4 x 4 DINOv2 patches of 14 px; the real V2 models use 518
DEPTH_PRO_PATCH_PX = 32  # DepthPro's ViT patch side; its native input is 4 x this (real: 384, 1536)


def _tiny_dinov2(**overrides: object) -> dict:
    config = {
        "model_type": "dinov2",
        "hidden_size": 16,
        "num_hidden_layers": 4,
        "num_attention_heads": 2,
        "mlp_ratio": 2,
        "layerscale_value": 1.0,
    }
    config.update(overrides)
    return config


def build_depth_anything(out_dir: Path) -> None:
    """Depth Anything V2 (relative disparity), processor as in depth-anything/*-V2-*-hf."""
    import torch
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation
    from transformers.models.dpt.image_processing_pil_dpt import DPTImageProcessorPil

    torch.manual_seed(0)
    config = DepthAnythingConfig(
        backbone_config=_tiny_dinov2(
            patch_size=14,
            image_size=DEPTH_ANYTHING_NATIVE_PX,
            out_indices=[1, 2, 3, 4],
            reshape_hidden_states=False,
        ),
        patch_size=14,
        reassemble_hidden_size=16,
        neck_hidden_sizes=[8, 8, 16, 16],
        fusion_hidden_size=8,
        head_hidden_size=8,
        depth_estimation_type="relative",
    )
    DepthAnythingForDepthEstimation(config).eval().save_pretrained(out_dir)
    # The same settings as the hub checkpoints' preprocessor_config.json (size 518 there).
    processor = DPTImageProcessorPil(
        size={"height": DEPTH_ANYTHING_NATIVE_PX, "width": DEPTH_ANYTHING_NATIVE_PX},
        keep_aspect_ratio=True,
        ensure_multiple_of=14,
        resample=3,  # bicubic
        image_mean=[0.485, 0.456, 0.406],
        image_std=[0.229, 0.224, 0.225],
        do_pad=False,
    )
    processor.save_pretrained(out_dir)


def build_depth_pro(out_dir: Path) -> None:
    """DepthPro with its field-of-view head (metric depth + focal length), as apple/DepthPro-hf."""
    import torch
    from transformers import DepthProConfig, DepthProForDepthEstimation

    torch.manual_seed(0)

    def encoder() -> dict:
        # DepthPro requires each DINOv2's image_size to equal its own patch_size (the ViT input).
        return _tiny_dinov2(patch_size=8, image_size=DEPTH_PRO_PATCH_PX)

    config = DepthProConfig(
        patch_size=DEPTH_PRO_PATCH_PX,
        fusion_hidden_size=16,
        intermediate_hook_ids=[3, 1],
        intermediate_feature_dims=[8, 8],
        scaled_images_ratios=[0.25, 0.5, 1],
        scaled_images_overlap_ratios=[0.0, 0.5, 0.25],
        scaled_images_feature_dims=[16, 16, 8],
        use_fov_model=True,
        num_fov_head_layers=2,
        image_model_config=encoder(),
        patch_model_config=encoder(),
        fov_model_config=encoder(),
    )
    model = DepthProForDepthEstimation(config).eval()
    with torch.no_grad():
        # Random weights give a field of view anywhere, often negative; bias the fov head's last
        # layer towards a camera-like ~60 degrees so the metric path sees plausible values.
        model.fov_model.head.layers[-1].bias.fill_(60.0)
    model.save_pretrained(out_dir)
    # DepthProImageProcessor needs torchvision, which this project must not install, so the file
    # is written as the hub checkpoint has it; the service reads these constants itself.
    size = 4 * DEPTH_PRO_PATCH_PX
    preprocessor = {
        "do_normalize": True,
        "do_rescale": True,
        "do_resize": True,
        "image_mean": [0.5, 0.5, 0.5],
        "image_processor_type": "DepthProImageProcessorFast",
        "image_std": [0.5, 0.5, 0.5],
        "resample": 2,  # bilinear
        "rescale_factor": 1 / 255,
        "size": {"height": size, "width": size},
    }
    (out_dir / "preprocessor_config.json").write_text(json.dumps(preprocessor, indent=2) + "\n")


BUILDERS: dict[str, Callable[[Path], None]] = {
    "depth-anything": build_depth_anything,
    "depth-pro": build_depth_pro,
}

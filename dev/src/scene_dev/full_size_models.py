"""Full-size random-weight models of every profile's architectures, for benchmarks.

Speed does not depend on the weights, so a model built from its published config with random
weights times as the real one does. Each is written once with ``save_pretrained`` (weights, config,
processor config) into ``CACHE/<id with / as __>`` and loaded by the services through the same
``from_pretrained`` path as the hub checkpoints:

    python scripts/full_size_models.py .cache/full-size facebook/sam2.1-hiera-tiny ...

Only torch and transformers are imported (and the tiny models' ADE20K label table). The configs
are the published ones (each checkpoint's config.json, or the original repositories' model
configs where transformers has no copy).
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from scene_dev.tiny_models.segment import ADE20K_ID2LABEL_NAMES

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]

# Depth Anything V2 (depth-anything/Depth-Anything-V2-*-hf/config.json).
DEPTH_ANYTHING = {
    "Small": {"hidden": 384, "layers": 12, "heads": 6, "out": [3, 6, 9, 12],
              "neck": [48, 96, 192, 384], "fusion": 64},
    "Base": {"hidden": 768, "layers": 12, "heads": 12, "out": [3, 6, 9, 12],
             "neck": [96, 192, 384, 768], "fusion": 128},
    "Large": {"hidden": 1024, "layers": 24, "heads": 16, "out": [5, 12, 18, 24],
              "neck": [256, 512, 1024, 1024], "fusion": 256},
}
# SAM2.1 Hiera image encoders (facebookresearch/sam2 configs/sam2.1/sam2.1_hiera_*.yaml).
SAM2 = {
    "tiny": {"embed": 96, "heads": 1, "blocks": [1, 2, 7, 2], "global": [5, 7, 9],
             "windows": [8, 4, 14, 7], "background": [7, 7]},
    "small": {"embed": 96, "heads": 1, "blocks": [1, 2, 11, 2], "global": [7, 10, 13],
              "windows": [8, 4, 14, 7], "background": [7, 7]},
    "base-plus": {"embed": 112, "heads": 2, "blocks": [2, 3, 16, 3], "global": [12, 16, 20],
                  "windows": [8, 4, 14, 7], "background": [14, 14]},
    "large": {"embed": 144, "heads": 2, "blocks": [2, 6, 36, 4], "global": [23, 33, 43],
              "windows": [8, 4, 16, 8], "background": [7, 7]},
}
# MaskFormer Swin backbones (facebook/maskformer-swin-*-ade/config.json).
MASKFORMER_SWIN = {
    "tiny": {"embed": 96, "depths": [2, 2, 6, 2], "heads": [3, 6, 12, 24], "window": 7,
             "short_edge": 512},
    "small": {"embed": 96, "depths": [2, 2, 18, 2], "heads": [3, 6, 12, 24], "window": 7,
              "short_edge": 512},
    "base": {"embed": 128, "depths": [2, 2, 18, 2], "heads": [4, 8, 16, 32], "window": 12,
             "short_edge": 640},
    "large": {"embed": 192, "depths": [2, 2, 18, 2], "heads": [6, 12, 24, 48], "window": 12,
              "short_edge": 640},
}
# SegFormer MiT encoders (nvidia/segformer-b*-finetuned-ade-512-512/config.json).
SEGFORMER = {
    "b0": {"hidden": [32, 64, 160, 256], "depths": [2, 2, 2, 2], "decoder": 256},
    "b1": {"hidden": [64, 128, 320, 512], "depths": [2, 2, 2, 2], "decoder": 256},
    "b2": {"hidden": [64, 128, 320, 512], "depths": [3, 4, 6, 3], "decoder": 768},
}


def _ade20k() -> dict:
    id2label = dict(enumerate(ADE20K_ID2LABEL_NAMES))
    return {"id2label": id2label, "label2id": {v: k for k, v in id2label.items()}}


def build_depth_anything(variant: str, out: Path) -> None:
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation
    from transformers.models.dpt.image_processing_pil_dpt import DPTImageProcessorPil

    spec = DEPTH_ANYTHING[variant]
    config = DepthAnythingConfig(
        backbone_config={
            "model_type": "dinov2", "hidden_size": spec["hidden"],
            "num_hidden_layers": spec["layers"], "num_attention_heads": spec["heads"],
            "image_size": 518, "patch_size": 14, "out_indices": spec["out"],
            "reshape_hidden_states": False,
        },
        reassemble_hidden_size=spec["hidden"], neck_hidden_sizes=spec["neck"],
        fusion_hidden_size=spec["fusion"])
    DepthAnythingForDepthEstimation(config).save_pretrained(out)
    DPTImageProcessorPil(size={"height": 518, "width": 518}, keep_aspect_ratio=True,
                         ensure_multiple_of=14, resample=3, image_mean=IMAGENET_MEAN,
                         image_std=IMAGENET_STD).save_pretrained(out)


def build_depth_pro(out: Path) -> None:
    from transformers import DepthProConfig, DepthProForDepthEstimation, Dinov2Config

    # apple/DepthPro-hf's architecture: three DINOv2-L encoders (patch, image, field of view) of
    # 1024 wide, 24 layers, 16 px patches at 384 px; about 952M parameters. transformers'
    # DepthProConfig defaults are a smaller DINOv2-B, so each encoder is given explicitly.
    def vit_large() -> Dinov2Config:
        return Dinov2Config(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                            image_size=384, patch_size=16, out_indices=[24],
                            out_features=["stage24"])

    config = DepthProConfig(patch_model_config=vit_large(), image_model_config=vit_large(),
                            fov_model_config=vit_large(), use_fov_model=True,
                            intermediate_hook_ids=(11, 5), intermediate_feature_dims=(256, 256))
    DepthProForDepthEstimation(config).save_pretrained(out)
    # DepthProImageProcessor imports torchvision (never installed here); these are the keys of
    # apple/DepthPro-hf's preprocessor_config.json, which the depth service reads itself.
    (out / "preprocessor_config.json").write_text(json.dumps({
        "image_processor_type": "DepthProImageProcessorFast", "do_resize": True,
        "size": {"height": 1536, "width": 1536}, "resample": 2, "do_rescale": True,
        "rescale_factor": 1 / 255, "do_normalize": True, "image_mean": [0.5, 0.5, 0.5],
        "image_std": [0.5, 0.5, 0.5]}, indent=2) + "\n")


def build_sam2(variant: str, out: Path) -> None:
    from transformers import Sam2Config, Sam2Model
    from transformers.models.sam2.configuration_sam2 import Sam2HieraDetConfig, Sam2VisionConfig

    spec = SAM2[variant]
    embed = [spec["embed"] * 2**i for i in range(4)]
    backbone = Sam2HieraDetConfig(
        hidden_size=spec["embed"], num_attention_heads=spec["heads"],
        blocks_per_stage=spec["blocks"], embed_dim_per_stage=embed,
        num_attention_heads_per_stage=[spec["heads"] * 2**i for i in range(4)],
        window_size_per_stage=spec["windows"], global_attention_blocks=spec["global"],
        window_positional_embedding_background_size=spec["background"])
    vision = Sam2VisionConfig(backbone_config=backbone, backbone_channel_list=embed[::-1])
    Sam2Model(Sam2Config(vision_config=vision)).save_pretrained(out)
    # Sam2ImageProcessor needs torchvision; the service reads these keys itself.
    (out / "preprocessor_config.json").write_text(json.dumps({
        "image_processor_type": "Sam2ImageProcessor", "size": {"height": 1024, "width": 1024},
        "mask_size": {"height": 256, "width": 256}, "do_rescale": True,
        "rescale_factor": 1 / 255, "do_normalize": True, "image_mean": IMAGENET_MEAN,
        "image_std": IMAGENET_STD, "do_convert_rgb": True}, indent=2) + "\n")


def build_maskformer(variant: str, out: Path) -> None:
    from transformers import (
        DetrConfig,
        MaskFormerConfig,
        MaskFormerForInstanceSegmentation,
        MaskFormerImageProcessorPil,
        SwinConfig,
    )

    spec = MASKFORMER_SWIN[variant]
    backbone = SwinConfig(embed_dim=spec["embed"], depths=spec["depths"], num_heads=spec["heads"],
                          window_size=spec["window"],
                          out_features=["stage1", "stage2", "stage3", "stage4"])
    model = MaskFormerForInstanceSegmentation(
        MaskFormerConfig(backbone_config=backbone, decoder_config=DetrConfig(), **_ade20k()))
    model.config.backbone_config = backbone  # saved as the real checkpoints have it
    model.save_pretrained(out)
    MaskFormerImageProcessorPil(
        size={"shortest_edge": spec["short_edge"], "longest_edge": 4 * spec["short_edge"]},
        size_divisor=32, image_mean=IMAGENET_MEAN, image_std=IMAGENET_STD, ignore_index=255,
        do_reduce_labels=True).save_pretrained(out)


def build_segformer(variant: str, out: Path) -> None:
    from transformers import (
        SegformerConfig,
        SegformerForSemanticSegmentation,
        SegformerImageProcessorPil,
    )

    spec = SEGFORMER[variant]
    config = SegformerConfig(hidden_sizes=spec["hidden"], depths=spec["depths"],
                             num_attention_heads=[1, 2, 5, 8],
                             decoder_hidden_size=spec["decoder"], **_ade20k())
    SegformerForSemanticSegmentation(config).save_pretrained(out)
    SegformerImageProcessorPil(size={"height": 512, "width": 512}, image_mean=IMAGENET_MEAN,
                               image_std=IMAGENET_STD, do_reduce_labels=True).save_pretrained(out)


def _builders() -> dict[str, Callable[[Path], None]]:
    from functools import partial

    builders: dict[str, Callable[[Path], None]] = {"apple/DepthPro-hf": build_depth_pro}
    for v in DEPTH_ANYTHING:
        builders[f"depth-anything/Depth-Anything-V2-{v}-hf"] = partial(build_depth_anything, v)
    for v in SAM2:
        builders[f"facebook/sam2.1-hiera-{v}"] = partial(build_sam2, v)
    for v in MASKFORMER_SWIN:
        builders[f"facebook/maskformer-swin-{v}-ade"] = partial(build_maskformer, v)
    for v in SEGFORMER:
        builders[f"nvidia/segformer-{v}-finetuned-ade-512-512"] = partial(build_segformer, v)
    return builders


BUILDERS = _builders()


def local_dir(cache: Path, model_id: str) -> Path:
    return cache / model_id.replace("/", "__")


def ensure(cache: Path, model_id: str) -> Path:
    """The directory of ``model_id``'s full-size random-weight twin, built on first use."""
    target = local_dir(cache, model_id)
    if (target / ".complete").exists():
        return target
    if model_id not in BUILDERS:
        raise KeyError(f"no full-size builder for {model_id}; known: {sorted(BUILDERS)}")
    import torch

    torch.manual_seed(0)
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache, prefix=".build-") as tmp:
        BUILDERS[model_id](Path(tmp))
        (Path(tmp) / ".complete").write_text(model_id + "\n")
        shutil.rmtree(target, ignore_errors=True)
        Path(tmp).rename(target)
        Path(tmp).mkdir()
    return target


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("cache", type=Path, help="where the models are built (once each)")
    parser.add_argument("model_ids", nargs="*", metavar="MODEL_ID",
                        help=f"hub ids (default: every one): {', '.join(BUILDERS)}")
    args = parser.parse_args(argv)
    for name in args.model_ids or BUILDERS:
        print(name, "->", ensure(args.cache, name), flush=True)

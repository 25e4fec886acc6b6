"""Tiny random-weight segment models: SAM2 (``Sam2Model``, the sam2.1-hiera architecture shrunk),
MaskFormer (Swin backbone, the facebook/maskformer-swin-*-ade layout) and SegFormer, both with the
full 150-class ADE20K ``id2label``.

The ADE20K names below are copied in the exact order and spelling of the real checkpoints'
``config.json`` (huggingface/label-files ``ade20k-id2label.json``, shared by
facebook/maskformer-swin-*-ade, facebook/mask2former-swin-*-ade-semantic and
nvidia/segformer-*-finetuned-ade-*; note the trailing space of "bed "). They are deliberately not
imported from segment_service: the service's category table is tested against this independent copy.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

ADE20K_ID2LABEL_NAMES: tuple[str, ...] = (
    "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed ", "windowpane", "grass",
    "cabinet", "sidewalk", "person", "earth", "door", "table", "mountain", "plant", "curtain",
    "chair", "car", "water", "painting", "sofa", "shelf", "house", "sea", "mirror", "rug", "field",
    "armchair", "seat", "fence", "desk", "rock", "wardrobe", "lamp", "bathtub", "railing",
    "cushion", "base", "box", "column", "signboard", "chest of drawers", "counter", "sand", "sink",
    "skyscraper", "fireplace", "refrigerator", "grandstand", "path", "stairs", "runway", "case",
    "pool table", "pillow", "screen door", "stairway", "river", "bridge", "bookcase", "blind",
    "coffee table", "toilet", "flower", "book", "hill", "bench", "countertop", "stove", "palm",
    "kitchen island", "computer", "swivel chair", "boat", "bar", "arcade machine", "hovel", "bus",
    "towel", "light", "truck", "tower", "chandelier", "awning", "streetlight", "booth",
    "television receiver", "airplane", "dirt track", "apparel", "pole", "land", "bannister",
    "escalator", "ottoman", "bottle", "buffet", "poster", "stage", "van", "ship", "fountain",
    "conveyer belt", "canopy", "washer", "plaything", "swimming pool", "stool", "barrel", "basket",
    "waterfall", "tent", "bag", "minibike", "cradle", "oven", "ball", "food", "step", "tank",
    "trade name", "microwave", "pot", "animal", "bicycle", "lake", "dishwasher", "screen",
    "blanket", "sculpture", "hood", "sconce", "vase", "traffic light", "tray", "ashcan", "fan",
    "pier", "crt screen", "plate", "monitor", "bulletin board", "shower", "radiator", "glass",
    "clock", "flag",
)
assert len(ADE20K_ID2LABEL_NAMES) == 150

# ImageNet statistics, as in the real checkpoints' preprocessor configs.
_IMAGENET_MEAN = [0.485, 0.456, 0.406]
_IMAGENET_STD = [0.229, 0.224, 0.225]

# The tiny SAM2 works on 128x128 inputs (the real one on 1024x1024); every size below follows.
_SAM_IMAGE_SIZE = 128


def _seeded() -> None:
    """Each model's weights depend only on its own builder, not on what was built before it."""
    import torch

    torch.manual_seed(0)


def _ade20k_labels() -> tuple[dict[int, str], dict[str, int]]:
    id2label = dict(enumerate(ADE20K_ID2LABEL_NAMES))
    return id2label, {name: i for i, name in id2label.items()}


def build_sam2(out_dir: Path) -> None:
    """Sam2Model with the sam2.1-hiera layout: 4 Hiera stages, FPN neck, prompt encoder, decoder."""
    _seeded()
    from transformers import Sam2Config, Sam2Model
    from transformers.models.sam2.configuration_sam2 import (
        Sam2HieraDetConfig,
        Sam2MaskDecoderConfig,
        Sam2PromptEncoderConfig,
        Sam2VisionConfig,
    )

    size = _SAM_IMAGE_SIZE
    backbone = Sam2HieraDetConfig(
        hidden_size=8,
        num_attention_heads=1,
        image_size=[size, size],
        blocks_per_stage=[1, 1, 2, 1],
        embed_dim_per_stage=[8, 16, 32, 64],
        num_attention_heads_per_stage=[1, 1, 2, 2],
        window_size_per_stage=[4, 2, 4, 2],
        global_attention_blocks=[3],
        window_positional_embedding_background_size=[2, 2],
    )
    vision = Sam2VisionConfig(
        backbone_config=backbone,
        backbone_channel_list=[64, 32, 16, 8],
        # Strides 4, 8 and 16 of the input: the mask decoder's high-resolution features.
        backbone_feature_sizes=[[size // 4, size // 4], [size // 8, size // 8],
                                [size // 16, size // 16]],
        fpn_hidden_size=32,
    )
    prompt = Sam2PromptEncoderConfig(
        hidden_size=32, image_size=size, patch_size=16, mask_input_channels=8
    )
    decoder = Sam2MaskDecoderConfig(
        hidden_size=32, mlp_dim=64, num_hidden_layers=2, num_attention_heads=2,
        iou_head_hidden_dim=32,
    )
    config = Sam2Config(
        vision_config=vision, prompt_encoder_config=prompt, mask_decoder_config=decoder
    )
    Sam2Model(config).eval().save_pretrained(out_dir)
    # Sam2ImageProcessor needs torchvision (not installed here), so its config is written as the
    # JSON that its save_pretrained would produce; the service reads these keys itself.
    processor = {
        "image_processor_type": "Sam2ImageProcessor",
        "do_resize": True,
        "size": {"height": size, "width": size},
        "mask_size": {"height": size // 4, "width": size // 4},
        "resample": 2,
        "do_rescale": True,
        "rescale_factor": 1 / 255,
        "do_normalize": True,
        "image_mean": _IMAGENET_MEAN,
        "image_std": _IMAGENET_STD,
        "do_convert_rgb": True,
    }
    (out_dir / "preprocessor_config.json").write_text(json.dumps(processor, indent=2) + "\n")


def build_maskformer(out_dir: Path) -> None:
    """MaskFormer with a Swin backbone and DETR decoder, 150 ADE20K classes."""
    _seeded()
    from transformers import (
        DetrConfig,
        MaskFormerConfig,
        MaskFormerForInstanceSegmentation,
        MaskFormerImageProcessorPil,
        SwinConfig,
    )

    id2label, label2id = _ade20k_labels()
    # A "swin" backbone config, as in the real checkpoints (the model wraps it as MaskFormerSwin).
    backbone = SwinConfig(
        image_size=64,
        embed_dim=8,
        depths=[1, 1, 1, 1],
        num_heads=[1, 1, 2, 2],
        window_size=4,
        out_features=["stage1", "stage2", "stage3", "stage4"],
    )
    decoder = DetrConfig(
        d_model=16,
        encoder_layers=1,
        decoder_layers=1,
        encoder_ffn_dim=32,
        decoder_ffn_dim=32,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        num_queries=10,
    )
    config = MaskFormerConfig(
        backbone_config=backbone,
        decoder_config=decoder,
        # GroupNorm(32 groups) in the pixel decoder needs multiples of 32.
        fpn_feature_size=32,
        mask_feature_size=32,
        id2label=id2label,
        label2id=label2id,
    )
    model = MaskFormerForInstanceSegmentation(config).eval()
    # The model swaps the config's "swin" backbone for its internal MaskFormerSwin on init; save
    # the "swin" one, as the real checkpoints have it (and as the model expects to load it).
    model.config.backbone_config = backbone
    model.save_pretrained(out_dir)
    MaskFormerImageProcessorPil(
        size={"shortest_edge": 96, "longest_edge": 192},
        size_divisor=32,
        image_mean=_IMAGENET_MEAN,
        image_std=_IMAGENET_STD,
        ignore_index=255,
        do_reduce_labels=True,
    ).save_pretrained(out_dir)


def build_segformer(out_dir: Path) -> None:
    """SegFormer (MiT encoder + all-MLP head), 150 ADE20K classes: proves that any transformers
    semantic-segmentation model with ADE20K labels serves through configuration alone."""
    _seeded()
    from transformers import (
        SegformerConfig,
        SegformerForSemanticSegmentation,
        SegformerImageProcessorPil,
    )

    id2label, label2id = _ade20k_labels()
    config = SegformerConfig(
        depths=[1, 1, 1, 1],
        hidden_sizes=[8, 16, 24, 32],
        num_attention_heads=[1, 1, 1, 2],
        decoder_hidden_size=16,
        id2label=id2label,
        label2id=label2id,
    )
    SegformerForSemanticSegmentation(config).eval().save_pretrained(out_dir)
    SegformerImageProcessorPil(
        size={"height": 96, "width": 96},
        image_mean=_IMAGENET_MEAN,
        image_std=_IMAGENET_STD,
        do_reduce_labels=True,
    ).save_pretrained(out_dir)


BUILDERS: dict[str, Callable[[Path], None]] = {
    "sam2": build_sam2,
    "maskformer": build_maskformer,
    "segformer": build_segformer,
}

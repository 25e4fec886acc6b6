"""Every setting of the segment service, read from ``SEG_*`` environment variables (and
``SAM_MODEL``) once.

The README's settings table documents each one; nothing else in the package reads the environment.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import AliasChoices, Field, model_validator
from pydantic_settings import SettingsConfigDict

from scene_rpc.profiles import Profile
from scene_rpc.settings import GraceSeconds, ModelServiceSettings, Port


class Mode(StrEnum):
    # SAM2 masks relabelled by the semantic model's per-pixel classes (best quality).
    HYBRID = "hybrid"
    # The semantic model alone; SAM2 is never loaded for it (fastest).
    SEMANTIC = "semantic"
    # Fewer SAM2 prompts; the semantic model's coarse map is consulted only as mask-level votes.
    SAM = "sam"


class PromptStrategy(StrEnum):
    # SAM2's uniform points_per_side x points_per_side grid.
    GRID = "grid"
    # A few prompts per region of the semantic map and along its boundaries (prompts.py).
    SEMANTIC = "semantic"


class CropMode(StrEnum):
    # The whole image plus overlapping tiles when it is larger than SEG_CROP_SIZE_PX (or a
    # panorama).
    AUTO = "auto"
    # The whole image only: one encoder pass.
    OFF = "off"


# Bounds of the prompt density, in settings and in requests alike.
MAX_POINTS_PER_SIDE = 128
# Smallest input-resolution cap a request or SEG_MAX_INPUT_SIDE_PX may set (0 = no cap).
MIN_INPUT_SIDE_PX = 64
# Point prompts per mask-decoder pass with SEG_POINTS_PER_BATCH=0. Measured with the full-size
# decoder (segment-service/bench): on CPU, 1 to 4 prompts per pass cost ~55 ms each and 16 or
# more ~230 ms each (the per-prompt copies of the image features no longer fit the caches); on a
# GPU, batching is what makes decoding fast (64 is SAM2's default).
CPU_POINTS_PER_BATCH = 4
ACCELERATOR_POINTS_PER_BATCH = 64


class Settings(ModelServiceSettings):
    """The shared model-service fields (scene_rpc.settings) as ``SEG_*``, and the segment ones.

    The profile picks `sam_model` and `semantic_model` (and the prompt density) unless those are
    set explicitly. ``runtime`` runs SAM2's image encoder, its prompt encoder and mask decoder
    and the semantic model.
    """

    model_config = SettingsConfigDict(env_prefix="SEG_", validate_by_name=True)
    # A response carries one uint8 category per pixel, plus labels and timings.
    response_bytes_per_pixel = 1

    port: Port = 50052
    grace_s: GraceSeconds = 30.0
    # Hub id or local directory of a transformers Sam2Model checkpoint.
    sam_model: str = Field(
        "facebook/sam2.1-hiera-large", validation_alias=AliasChoices("SAM_MODEL", "SEG_SAM_MODEL")
    )
    # Hub id or local directory of any transformers semantic or universal segmentation model
    # trained on ADE20K-150 (MaskFormer, Mask2Former, SegFormer, BEiT, UperNet, ...).
    semantic_model: str = Field(
        "facebook/maskformer-swin-large-ade", validation_alias=AliasChoices("SEG_MODEL")
    )
    # The mode of requests that leave it unspecified.
    mode: Mode = Mode.HYBRID
    # SAM2 prompt grid on the whole image (points_per_side**2 point prompts), hybrid mode.
    points_per_side: int = Field(32, ge=1, le=MAX_POINTS_PER_SIDE)
    # Prompt grid on each tile of a large image or panorama, hybrid mode.
    crop_points_per_side: int = Field(16, ge=1, le=MAX_POINTS_PER_SIDE)
    # The same two grids in sam mode, which trades mask density for speed.
    sam_mode_points_per_side: int = Field(16, ge=1, le=MAX_POINTS_PER_SIDE)
    sam_mode_crop_points_per_side: int = Field(8, ge=1, le=MAX_POINTS_PER_SIDE)
    # Where the prompts go in requests that leave it unspecified; the density above applies to
    # both (semantic: about sqrt of the grid points per region, never more than the grid).
    prompt_strategy: PromptStrategy = PromptStrategy.SEMANTIC
    # Whether large images and panoramas are also segmented in tiles, for requests that leave it
    # unspecified.
    crop_mode: CropMode = CropMode.AUTO
    # Longer side the models see, for requests that leave it unspecified: larger images are
    # downscaled first and the categories resized back (nearest). 0 = no cap.
    max_input_side_px: int = Field(0, ge=0)
    # Point prompts decoded per forward pass of the mask decoder; 0 = 64 on a GPU (SAM2's
    # default) and 4 on CPU, where larger batches outgrow the caches and run slower per prompt.
    points_per_batch: int = Field(0, ge=0, le=4096)
    # Masks below this predicted IoU or stability score are dropped (SAM2's automatic defaults).
    pred_iou_thresh: float = Field(0.8, ge=0.0, le=1.0)
    stability_score_thresh: float = Field(0.95, ge=0.0, le=1.0)
    stability_score_offset: float = Field(1.0, ge=0.0)
    # Box IoU above which the lower-scoring of two masks is a duplicate, within and across crops.
    box_nms_thresh: float = Field(0.7, gt=0.0, le=1.0)
    crop_nms_thresh: float = Field(0.7, gt=0.0, le=1.0)
    # Holes and islands smaller than this many pixels are removed from each mask; 0 = keep all.
    min_region_area: int = Field(100, ge=0)
    # Images whose longer side exceeds this are also segmented in overlapping square tiles of this
    # side (pixel for pixel at SAM2's 1024 input); 0 = never tile (panoramas still wrap).
    crop_size_px: int = Field(1024, ge=0)
    # Fraction of a tile shared with each neighbour.
    crop_overlap: float = Field(0.25, ge=0.0, le=0.5)

    @classmethod
    def profile_values(cls, profile: Profile) -> dict[str, object]:
        return {"sam_model": profile.sam_model, "semantic_model": profile.semantic_model,
                **profile.segment_defaults}

    @model_validator(mode="after")
    def _input_cap_is_usable(self) -> Settings:
        if 0 < self.max_input_side_px < MIN_INPUT_SIDE_PX:
            raise ValueError(f"SEG_MAX_INPUT_SIDE_PX={self.max_input_side_px}: 0 (no cap) or at "
                             f"least {MIN_INPUT_SIDE_PX}")
        return self

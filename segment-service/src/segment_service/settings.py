"""Every setting of the segment service, read from ``SEG_*`` environment variables (and
``SAM_MODEL``) once.

The README's settings table documents each one; nothing else in the package reads the environment.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from scene_rpc.accel import Runtime
from scene_rpc.images import DEFAULT_MAX_IMAGE_PIXELS
from scene_rpc.profiles import DEFAULT_PROFILE, apply_profile, get_profile
from scene_rpc.server import DEFAULT_MAX_MESSAGE_BYTES

# A response carries one uint8 category per pixel, plus labels and timings.
RESPONSE_BYTES_PER_PIXEL = 1
RESPONSE_ENVELOPE_BYTES = 1024 * 1024


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


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="SEG_", extra="ignore", frozen=True, validate_by_name=True
    )

    # The stack-wide model profile (scene_rpc.profiles): quality, balanced or fast. It picks
    # `sam_model` and `semantic_model` unless those are set explicitly. The one variable every
    # model service reads, so it has no SEG_ prefix.
    profile: str = Field(DEFAULT_PROFILE, validation_alias=AliasChoices("PROFILE"))
    host: str = "[::]"
    port: int = Field(50052, ge=0, le=65535)
    # Hub id or local directory of a transformers Sam2Model checkpoint.
    sam_model: str = Field(
        "facebook/sam2.1-hiera-large", validation_alias=AliasChoices("SAM_MODEL", "SEG_SAM_MODEL")
    )
    # Hub id or local directory of any transformers semantic or universal segmentation model
    # trained on ADE20K-150 (MaskFormer, Mask2Former, SegFormer, BEiT, UperNet, ...).
    semantic_model: str = Field(
        "facebook/maskformer-swin-large-ade", validation_alias=AliasChoices("SEG_MODEL")
    )
    # "auto" (CUDA > MPS > CPU) or a torch device string such as "cpu" or "cuda:1".
    device: str = "auto"
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
    # Checked against the header before any pixel is decompressed.
    max_pixels: int = Field(DEFAULT_MAX_IMAGE_PIXELS, ge=64)
    # torch intra-op threads; 0 = one per available core. Compiled runtimes use as many.
    threads: int = Field(0, ge=0)
    # What runs SAM2's image encoder and the semantic model: "auto" = OpenVINO (float32) on a
    # CPU, eager PyTorch on CUDA/MPS; or torch, openvino, onnx (scene_rpc.accel). A model whose
    # export fails runs eagerly. The mask decoder always runs eagerly (many small passes).
    runtime: Runtime = Runtime.AUTO
    # Exported graphs, keyed by model, revision, config and runtime version.
    runtime_cache_dir: Path = Path("~/.cache/scene-server/compiled")
    # Load the models at startup (in the background) instead of on the first request.
    preload: bool = False
    # Seconds in-flight requests may take to finish after SIGTERM.
    grace_s: float = Field(30.0, ge=0)
    max_message_bytes: int = Field(DEFAULT_MAX_MESSAGE_BYTES, ge=4 * 1024 * 1024)
    log_level: str = "INFO"
    # After a failed load, requests within this many seconds fail fast instead of reloading.
    load_retry_s: float = Field(30.0, ge=0)
    # Prometheus metrics on their own HTTP port (/metrics); 0 = off.
    metrics_port: int = Field(0, ge=0, le=65535)
    # Tracing: empty = off, "console" = spans as JSON lines on stdout, else an OTLP/HTTP URL.
    trace_exporter: str = ""

    @field_validator("profile")
    @classmethod
    def _known_profile(cls, value: str) -> str:
        return get_profile(value).name

    @model_validator(mode="after")
    def _models_from_profile(self) -> Settings:
        # An explicitly set model or default (even to the quality one) wins over the profile's.
        profile = get_profile(self.profile)
        apply_profile(self, {"sam_model": profile.sam_model,
                             "semantic_model": profile.semantic_model,
                             **profile.segment_defaults})
        return self

    @model_validator(mode="after")
    def _input_cap_is_usable(self) -> Settings:
        if 0 < self.max_input_side_px < MIN_INPUT_SIDE_PX:
            raise ValueError(f"SEG_MAX_INPUT_SIDE_PX={self.max_input_side_px}: 0 (no cap) or at "
                             f"least {MIN_INPUT_SIDE_PX}")
        return self

    @model_validator(mode="after")
    def _responses_fit_in_a_message(self) -> Settings:
        needed = self.max_pixels * RESPONSE_BYTES_PER_PIXEL + RESPONSE_ENVELOPE_BYTES
        if needed > self.max_message_bytes:
            raise ValueError(
                f"SEG_MAX_PIXELS={self.max_pixels} needs responses of up to {needed} bytes, "
                f"over SEG_MAX_MESSAGE_BYTES={self.max_message_bytes}"
            )
        return self

"""Every setting of the depth service, read from ``DEPTH_*`` environment variables once.

The README's settings table documents each one; nothing else in the package reads the environment.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from depth_service.panorama import PanoramaMode, ViewLayout
from scene_rpc.accel import Runtime
from scene_rpc.images import DEFAULT_MAX_IMAGE_PIXELS
from scene_rpc.profiles import DEFAULT_PROFILE, apply_profile, get_profile
from scene_rpc.server import DEFAULT_MAX_MESSAGE_BYTES

# A response carries up to two float32 maps (normalized + metric) of the input's size.
RESPONSE_BYTES_PER_PIXEL = 8
RESPONSE_ENVELOPE_BYTES = 1024 * 1024


class TileMode(StrEnum):
    OFF = "off"
    # Tile only when the image is meaningfully larger than the model's native input.
    AUTO = "auto"
    FORCED = "forced"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DEPTH_", extra="ignore", frozen=True)

    # The stack-wide model profile (scene_rpc.profiles): quality, balanced or fast. It picks
    # `model` and `fallback_model` unless those are set explicitly. The one variable every model
    # service reads, so it has no DEPTH_ prefix.
    profile: str = Field(DEFAULT_PROFILE, validation_alias=AliasChoices("PROFILE", "profile"))
    host: str = "[::]"
    port: int = Field(50051, ge=0, le=65535)
    # Hub id or local directory of any transformers depth model of a supported architecture.
    model: str = "apple/DepthPro-hf"
    # Loaded when `model` cannot be; empty = no fallback.
    fallback_model: str = "depth-anything/Depth-Anything-V2-Large-hf"
    # "auto" (CUDA > MPS > CPU) or a torch device string such as "cpu" or "cuda:1".
    device: str = "auto"
    # torch intra-op threads; 0 = one per available core. Compiled runtimes use as many.
    threads: int = Field(0, ge=0)
    # What runs the forward pass: auto = OpenVINO on a CPU (measured fastest at equal outputs),
    # eager PyTorch on CUDA/MPS; or torch, openvino, onnx.
    runtime: Runtime = Runtime.AUTO
    # Exported graphs of compiled runtimes, keyed by model, revision, config and runtime version.
    runtime_cache_dir: Path = Path("~/.cache/scene-server/compiled")
    preload: bool = False
    # Checked against the header before any pixel is decompressed.
    max_pixels: int = Field(DEFAULT_MAX_IMAGE_PIXELS, ge=64)
    tile_mode: TileMode = TileMode.AUTO
    # Tile side in input pixels; 0 = the model's native input side (tiles run pixel for pixel).
    tile_size: int = Field(0, ge=0)
    # Fraction of a tile shared with each neighbour.
    tile_overlap: float = Field(0.25, gt=0.0, le=0.5)
    # Above this many tiles the tiles grow (and are downsampled to the native input) instead.
    tile_max_count: int = Field(64, ge=1)
    # Default cap on the longer side of the image the model sees (downscaled first, the depth
    # resized back); 0 = none. A request's max_input_side_px overrides it.
    max_input_side_px: int = Field(0, ge=0)
    # Panoramas: "perspective" (pinhole views merged on the sphere) or "equirect" (today's
    # wrapping equirectangular tiles, kept for comparison).
    panorama_mode: PanoramaMode = PanoramaMode.PERSPECTIVE
    # The perspective views: "cube" (6 faces of 110 degrees) or "icosahedron" (12 of 90).
    panorama_views: ViewLayout = ViewLayout.CUBE
    # Tiles per forward pass; 0 = 8 on CUDA, 1 elsewhere (a CPU gains nothing from batches).
    batch_size: int = Field(0, ge=0)
    # Seconds in-flight requests may take to finish after SIGTERM (inside a 30 s pod grace).
    grace_s: float = Field(25.0, ge=0)
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
        apply_profile(self, {"model": profile.depth_model,
                             "fallback_model": profile.depth_fallback_model,
                             **profile.depth_defaults})
        return self

    @model_validator(mode="after")
    def _responses_fit_in_a_message(self) -> Settings:
        needed = self.max_pixels * RESPONSE_BYTES_PER_PIXEL + RESPONSE_ENVELOPE_BYTES
        if needed > self.max_message_bytes:
            raise ValueError(
                f"DEPTH_MAX_PIXELS={self.max_pixels} needs responses of up to {needed} bytes, "
                f"over DEPTH_MAX_MESSAGE_BYTES={self.max_message_bytes}"
            )
        return self

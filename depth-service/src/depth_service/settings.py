"""Every setting of the depth service, read from ``DEPTH_*`` environment variables once.

The README's settings table documents each one; nothing else in the package reads the environment.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from depth_service.panorama import PanoramaMode, ViewLayout
from scene_rpc.profiles import Profile
from scene_rpc.settings import GraceSeconds, ModelServiceSettings, Port


class TileMode(StrEnum):
    OFF = "off"
    # Tile only when the image is meaningfully larger than the model's native input.
    AUTO = "auto"
    FORCED = "forced"


class Settings(ModelServiceSettings):
    """The shared model-service fields (scene_rpc.settings) as ``DEPTH_*``, and the depth ones.

    The profile picks `model` and `fallback_model` unless those are set explicitly."""

    model_config = SettingsConfigDict(env_prefix="DEPTH_")
    # A response carries up to two float32 maps (normalized + metric) of the input's size.
    response_bytes_per_pixel = 8

    port: Port = 50051
    # Inside a 30 s pod grace.
    grace_s: GraceSeconds = 25.0
    # Hub id or local directory of any transformers depth model of a supported architecture.
    model: str = "apple/DepthPro-hf"
    # Loaded when `model` cannot be; empty = no fallback.
    fallback_model: str = "depth-anything/Depth-Anything-V2-Large-hf"
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

    @classmethod
    def profile_values(cls, profile: Profile) -> dict[str, object]:
        return {"model": profile.depth_model, "fallback_model": profile.depth_fallback_model,
                **profile.depth_defaults}

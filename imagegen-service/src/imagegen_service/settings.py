"""The service's configuration: one object, read from the environment once at start-up.

There is deliberately no API key here: the key comes with each request and lives only as long as
that request.
"""

from __future__ import annotations

from typing import Literal

from pydantic import AliasChoices, Field, model_validator
from pydantic_settings import SettingsConfigDict

from imagegen_service.models import ModelProfile, profile_for
from imagegen_service.prompts import template_budget_chars
from scene_rpc.images import DEFAULT_MAX_IMAGE_PIXELS
from scene_rpc.settings import GraceSeconds, Port, ServiceSettings

OPENAI_API_BASE_URL = "https://api.openai.com/v1"
# Below this a prompt limit is a misconfiguration, not a limit.
MIN_PROMPT_CHARS = 100


class Settings(ServiceSettings):
    """The fields every service shares (scene_rpc.settings) as ``IMAGEGEN_*``, and its own."""

    model_config = SettingsConfigDict(
        env_prefix="IMAGEGEN_",
        populate_by_name=True,
        # Compose files and shells pass unset settings as empty strings: those mean the default.
        env_ignore_empty=True,
    )

    port: Port = 50053
    model: str = "dall-e-3"
    # Read without the prefix: the variable every OpenAI-compatible tool already understands.
    openai_base_url: str = Field(
        OPENAI_API_BASE_URL,
        validation_alias=AliasChoices("OPENAI_BASE_URL", "openai_base_url"),
    )
    quality: str = ""
    # Limits on the caller's text (advertised by GetInfo for the front door). The prompt's is a
    # cap: the model's own limit, less the template and the longest vibe, may lower it
    # (`prompt_limit`), so that every accepted prompt and vibe fit upstream once templated.
    max_prompt_chars: int = Field(4000, ge=1)
    max_vibe_chars: int = Field(300, ge=0)

    attempt_timeout_s: float = Field(120.0, gt=0)
    deadline_s: float = Field(180.0, gt=0)
    max_retries: int = Field(3, ge=0)
    backoff_initial_s: float = Field(1.0, ge=0)
    backoff_max_s: float = Field(20.0, ge=0)

    download_timeout_s: float = Field(30.0, gt=0)
    max_download_bytes: int = Field(64 * 1024 * 1024, gt=0)
    # The largest image decoded from the API, and the largest panorama a request may ask for.
    max_image_pixels: int = Field(DEFAULT_MAX_IMAGE_PIXELS, gt=0)

    panorama_fit: Literal["resize", "crop"] = "resize"
    seam_band_px: int = Field(64, ge=2)

    grace_s: GraceSeconds = 10.0

    @model_validator(mode="after")
    def _check(self) -> Settings:
        profile = profile_for(self.model)
        if self.quality and self.quality not in profile.qualities:
            raise ValueError(
                f"IMAGEGEN_QUALITY={self.quality!r} is not one of {self.model}'s "
                f"{', '.join(profile.qualities)}"
            )
        if self.prompt_limit < MIN_PROMPT_CHARS:
            raise ValueError(
                f"IMAGEGEN_MAX_VIBE_CHARS={self.max_vibe_chars} leaves {self.prompt_limit} "
                f"characters for a prompt within {self.model}'s {profile.max_prompt_chars} "
                f"(the template takes up to {template_budget_chars()})"
            )
        if self.seam_band_px % 2:
            raise ValueError("IMAGEGEN_SEAM_BAND_PX must be even (the 2:1 width must stay even)")
        if self.seam_band_px * 4 > profile.widest.width:
            raise ValueError(
                f"IMAGEGEN_SEAM_BAND_PX={self.seam_band_px} is over a quarter of "
                f"{self.model}'s widest image ({profile.widest.width} px)"
            )
        return self

    @property
    def profile(self) -> ModelProfile:
        return profile_for(self.model)

    @property
    def prompt_limit(self) -> int:
        """The longest prompt accepted: IMAGEGEN_MAX_PROMPT_CHARS, or less when the model's
        limit leaves less room beside the template and the longest vibe."""
        room = self.profile.max_prompt_chars - template_budget_chars() - self.max_vibe_chars
        return min(self.max_prompt_chars, room)

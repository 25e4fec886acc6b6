"""What the service knows about each OpenAI image model: sizes, prompt limit, response options.

One table, so that supporting another model (or a gateway's alias of one) is one entry.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Size:
    width: int
    height: int

    def __str__(self) -> str:
        return f"{self.width}x{self.height}"

    @property
    def is_landscape(self) -> bool:
        return self.width > self.height


@dataclass(frozen=True)
class ModelProfile:
    model_id: str
    sizes: tuple[Size, ...]
    #: The standard mode's default: a landscape frame suits a scene seen from one viewpoint.
    landscape: Size
    max_prompt_chars: int
    #: DALL·E models take ``response_format`` (url or b64_json); GPT image models reject it and
    #: always answer base64.
    accepts_response_format: bool
    #: Values of ``quality`` the model accepts ("" = leave it to the API).
    qualities: tuple[str, ...]

    @property
    def widest(self) -> Size:
        """The panorama mode's upstream size: the most horizontal field of view on offer."""
        return max(self.sizes, key=lambda s: (s.width / s.height, s.width))


PROFILES: dict[str, ModelProfile] = {
    profile.model_id: profile
    for profile in (
        ModelProfile(
            model_id="dall-e-3",
            sizes=(Size(1024, 1024), Size(1792, 1024), Size(1024, 1792)),
            landscape=Size(1792, 1024),
            max_prompt_chars=4000,
            accepts_response_format=True,
            qualities=("standard", "hd"),
        ),
        ModelProfile(
            model_id="gpt-image-1",
            sizes=(Size(1024, 1024), Size(1536, 1024), Size(1024, 1536)),
            landscape=Size(1536, 1024),
            max_prompt_chars=32000,
            accepts_response_format=False,
            qualities=("low", "medium", "high", "auto"),
        ),
    )
}


def profile_for(model_id: str) -> ModelProfile:
    try:
        return PROFILES[model_id]
    except KeyError:
        known = ", ".join(sorted(PROFILES))
        raise ValueError(f"unsupported image model {model_id!r}; supported: {known}") from None

"""``GET /limits``: the limits every request is checked against, and where each comes from."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, Field

from orchestrator import formats
from orchestrator.enums import Geometry
from orchestrator.limits import Advertised
from orchestrator.runtime import RuntimeDep

router = APIRouter(tags=["health"])


class AdvertisedLimits(BaseModel):
    """One service's ``GetInfo.limits`` (0 = no limit of that kind)."""

    max_image_pixels: int
    max_prompt_chars: int
    max_vibe_chars: int
    max_message_bytes: int


class OwnLimits(BaseModel):
    """The orchestrator's own settings (0 = none of its own)."""

    max_prompt_chars: int
    max_vibe_chars: int
    max_image_pixels: int
    max_upload_bytes: int
    max_message_bytes: int


class FormatOffer(BaseModel):
    """One output format the server makes of a generation (orchestrator.formats)."""

    name: str = Field(description="The file under /generations/{id}/, e.g. `scene.glb`.")
    format: str = Field(description="Its `?format=` name.")
    media_type: str
    geometry: list[Geometry] = Field(description="What it can hold (`?geometry=`).")
    on_generate: bool = Field(description="POST /generate can answer with it.")


class LimitsView(BaseModel):
    max_prompt_chars: int = Field(description="Longest prompt (and upload caption), in "
                                              "characters; 0 = no limit.")
    max_vibe_chars: int = Field(description="Longest vibe, in characters; 0 = no limit.")
    max_image_pixels: int = Field(description="Most pixels (width x height) of an uploaded "
                                              "photo; 0 = no limit.")
    max_upload_bytes: int = Field(description="Largest uploaded file, in bytes.")
    max_message_bytes: int = Field(description="Largest gRPC message of the calls that carry "
                                               "the photo; it bounds the pixels too.")
    max_generated_pixels: int = Field(description="The largest image imagegen says it makes.")
    orchestrator: OwnLimits
    services: dict[str, AdvertisedLimits | None] = Field(
        description="What each service advertises; null for one not heard from yet (its "
                    "limits are then the orchestrator's own until it answers).")
    formats: list[FormatOffer] = Field(
        description="The output formats offered, so a client shows only what it can get.")


# The registry does not change while the server runs.
OFFERS = [FormatOffer(name=f.asset, format=str(f.name), media_type=f.media_type,
                      geometry=list(f.geometries), on_generate=f.on_generate)
          for f in formats.FORMATS.values()]


def _advertised(limits: Advertised | None) -> AdvertisedLimits | None:
    return None if limits is None else AdvertisedLimits(**limits.__dict__)


@router.get("/limits", summary="The request limits in force and the formats offered",
            response_model=LimitsView)
async def limits(runtime: RuntimeDep) -> LimitsView:
    """Each is the tightest of the orchestrator's setting and what the services advertise in
    `GetInfo.limits` (read at start and kept fresh); a request over one is refused with a 4xx
    before it is queued. See the README's limits table."""
    settings, services = runtime.settings, runtime.services
    return LimitsView(
        **services.limits.as_dict(),
        orchestrator=OwnLimits(
            max_prompt_chars=settings.max_prompt_chars, max_vibe_chars=settings.max_vibe_chars,
            max_image_pixels=settings.max_image_pixels,
            max_upload_bytes=settings.max_upload_bytes,
            max_message_bytes=settings.max_message_bytes),
        services={c.name: _advertised(c.limits) for c in services.clients},
        formats=OFFERS,
    )

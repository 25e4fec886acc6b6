"""The limits of a request: the body limit, and the limits every request is checked against at
the front door.

Starlette's own body limit answers in plain text whenever Content-Length is over it, whatever
the route would have said, so the API uses ``BodyLimitMiddleware`` instead.

Each model service owns its limits and advertises them in ``GetInfo.limits``; the orchestrator
combines them with its own settings (``RequestLimits.combine``: the tightest wins) and refuses a
request over them before anything is queued. The README's limits table lists them; a test walks
each one (tests/e2e/test_limits.py).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from orchestrator.errors import ApiError

if TYPE_CHECKING:
    from orchestrator.settings import Settings


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, max_body_bytes: int, max_upload_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.detail = (f"the request body is over the limit of {max_body_bytes} bytes (an "
                       f"uploaded image may have at most {max_upload_bytes} bytes)")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = Headers(scope=scope).get("content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body_bytes:
            # Refused before a byte of it is read.
            await JSONResponse({"detail": self.detail}, status_code=413)(scope, receive, send)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    # Raised inside the route that reads the body: the API's handler answers.
                    raise ApiError(413, self.detail)
            return message

        await self.app(scope, limited_receive, send)


# -- the request limits: the orchestrator's own settings and what the services advertise ---------

# Room for a message's other fields around its pixels (the services reserve the same).
MESSAGE_ENVELOPE_BYTES = 1024 * 1024
# The largest message per pixel of a generation: the depth answer, two float32 maps (normalised
# and metric depth), which the orchestrator must be able to receive.
ANSWER_BYTES_PER_PIXEL = 8
# The image sent to depth and segment: raw RGB (scene_rpc.images.image_message).
REQUEST_BYTES_PER_PIXEL = 3


def tightest(*limits: int | None) -> int:
    """The smallest of some limits where 0 (or None: not known) means none; 0 if all are."""
    known = [limit for limit in limits if limit]
    return min(known) if known else 0


def pixel_cap(limit: int) -> int:
    """A pixel limit for decoders, which need a number: 0 (none) becomes one no image reaches."""
    return limit or 2**62


def pixels_within(message_bytes: int, bytes_per_pixel: int) -> int:
    """The most pixels whose message fits ``message_bytes`` (0 = no message limit)."""
    if not message_bytes:
        return 0
    return max((message_bytes - MESSAGE_ENVELOPE_BYTES) // bytes_per_pixel, 1)


@dataclass(frozen=True)
class Advertised:
    """One service's ``GetInfo.limits`` (0 = no limit of that kind)."""

    max_image_pixels: int = 0
    max_prompt_chars: int = 0
    max_vibe_chars: int = 0
    max_message_bytes: int = 0

    @classmethod
    def from_proto(cls, limits) -> Advertised:
        return cls(int(limits.max_image_pixels), int(limits.max_prompt_chars),
                   int(limits.max_vibe_chars), int(limits.max_message_bytes))


@dataclass(frozen=True)
class RequestLimits:
    """What the front door checks each request against (0 = no limit): the tightest of the
    orchestrator's own setting and what the services advertise, so that an accepted request
    never fails later on a limit that was known when it came in."""

    max_prompt_chars: int
    max_vibe_chars: int
    # An uploaded photo: depth and segment each receive it and depth answers with 8 bytes a
    # pixel, so every one of their pixel and message limits applies.
    max_image_pixels: int
    max_upload_bytes: int
    # Of the calls that carry the photo (the orchestrator's and depth's and segment's).
    max_message_bytes: int
    # The largest image imagegen says it makes (for information: the API takes no size).
    max_generated_pixels: int

    @classmethod
    def combine(cls, settings: Settings, depth: Advertised | None, segment: Advertised | None,
                imagegen: Advertised | None) -> RequestLimits:
        depth, segment, imagegen = (a or Advertised() for a in (depth, segment, imagegen))
        service_messages = tightest(depth.max_message_bytes, segment.max_message_bytes)
        return cls(
            max_prompt_chars=tightest(settings.max_prompt_chars, imagegen.max_prompt_chars),
            max_vibe_chars=tightest(settings.max_vibe_chars, imagegen.max_vibe_chars),
            max_image_pixels=tightest(
                settings.max_image_pixels, depth.max_image_pixels, segment.max_image_pixels,
                pixels_within(settings.max_message_bytes, ANSWER_BYTES_PER_PIXEL),
                pixels_within(service_messages, REQUEST_BYTES_PER_PIXEL)),
            max_upload_bytes=settings.max_upload_bytes,
            max_message_bytes=tightest(settings.max_message_bytes, service_messages),
            max_generated_pixels=tightest(settings.max_image_pixels, imagegen.max_image_pixels),
        )

    def as_dict(self) -> dict[str, int]:
        return asdict(self)

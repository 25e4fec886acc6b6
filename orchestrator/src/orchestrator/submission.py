"""Reading a generation request: JSON with a prompt, or a multipart upload with an image.

One endpoint takes both bodies, so they are parsed here rather than by FastAPI's signature
inspection; validation failures still come out as FastAPI's 422 with the field's location.
"""

from __future__ import annotations

import hashlib
import json
import unicodedata
from dataclasses import dataclass, replace
from typing import Annotated, Any, Literal

import pydantic_core
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
)
from starlette.datastructures import UploadFile

from orchestrator.enums import Mode, Quality, Source
from orchestrator.errors import ApiError
from orchestrator.flow import JobInputs
from orchestrator.imaging import exif_focal_length_px
from orchestrator.limits import RequestLimits, pixel_cap
from orchestrator.pipeline import blocking, check_panorama
from orchestrator.quality import DEFAULT_QUALITY, QUALITIES
from orchestrator.settings import Settings
from pointcloud import DEFAULT_EDGE_RTOL, MAX_EDGE_RTOL
from pointcloud.edges import check_edge_rtol
from scene_rpc.errors import ImageTooLarge, InvalidInput
from scene_rpc.images import decode_image_bytes

EDGES_DESCRIPTION = ("Flying-pixel clean-up: \"keep\" every point, \"drop\" the points a depth "
                     "model smears across depth jumps (the service's EDGE_RTOL threshold), or a "
                     f"threshold in (0, {MAX_EDGE_RTOL}]: the relative depth range of a pixel's "
                     f"neighbourhood above which it is dropped (default {DEFAULT_EDGE_RTOL}).")


def _check_edges(value: str | float | None) -> str | float | None:
    if isinstance(value, float | int) and not isinstance(value, bool):
        check_edge_rtol(value)  # ValueError -> 422 with the range
        return float(value)
    return value


def _edges_not_a_bool(value: Any) -> Any:
    if isinstance(value, bool):  # JSON true would otherwise pass as the threshold 1.0
        raise ValueError('edges must be "keep", "drop" or a number')
    return value


# Whitespace a text box sends (browsers send a textarea's newlines as CR LF); any other control
# character (C0, DEL, C1) or a lone surrogate is refused: the text travels to OpenAI, into logs
# and into stored records, where a NUL or an escape sequence has no business.
_ALLOWED_CONTROLS = frozenset("\t\n\r")


def _no_control_characters(value: str | None) -> str | None:
    if value is None:
        return value
    for position, char in enumerate(value):
        if char not in _ALLOWED_CONTROLS and unicodedata.category(char) in ("Cc", "Cs"):
            raise ValueError(f"control character U+{ord(char):04X} at position {position}; "
                             "only tab and line breaks are allowed")
    return value


# The same rule for the OpenAPI schema, so that clients (and the API fuzzer) know it; the
# validator above gives the clearer message.
TEXT_PATTERN = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]*$"

# Free text of a request (prompt, vibe, caption): the same check in JSON and multipart bodies.
Text = Annotated[str, AfterValidator(_no_control_characters),
                 Field(json_schema_extra={"pattern": TEXT_PATTERN})]

# The request's `edges`, checked the same way in a JSON body and in multipart fields.
Edges = Annotated[Literal["keep", "drop"] | float | None,
                  BeforeValidator(_edges_not_a_bool), AfterValidator(_check_edges)]


class PromptRequest(BaseModel):
    """A text prompt: an image is generated with the caller's OpenAI key, then made 3D."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    prompt: Text = Field(min_length=1, description="What the scene shows.")
    vibe: Text = Field("", description="A short mood or style phrase woven into the prompt.")
    mode: Mode = Field(Mode.STANDARD, description="standard: a landscape image; panorama: a 2:1 "
                                               "equirectangular panorama (a sphere of points).")
    quality: Quality = Field(DEFAULT_QUALITY, description="draft: a quick look (semantic labels "
                             "only, one small depth pass, every 2nd pixel); standard; high: "
                             "SAM2's dense prompt grid, no input cap.")
    openai_api_key: SecretStr | None = Field(
        None, description="The caller's OpenAI key; may instead come as `Authorization: Bearer "
                          "...` or `X-OpenAI-Key`. Used for this generation only, never stored.")
    edges: Edges = Field(None, description=EDGES_DESCRIPTION)

    @field_validator("prompt", "vibe")
    @classmethod
    def _length(cls, value: str, info) -> str:
        _check_length(value, info)
        return value


class UploadFields(BaseModel):
    """The text fields of a multipart upload (the `image` file is the rest)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    vibe: Text = ""
    mode: Mode = Mode.STANDARD
    quality: Quality = DEFAULT_QUALITY
    # A caption to remember the upload by; not sent anywhere.
    prompt: Text | None = None
    edges: Edges = None

    @field_validator("vibe", "prompt")
    @classmethod
    def _length(cls, value: str | None, info) -> str | None:
        if value is not None:
            _check_length(value, info)
        return value


def _check_length(value: str, info) -> None:
    """The field's length against the request limits in the validation context (limits.py)."""
    limits: RequestLimits | None = info.context["limits"] if info.context else None
    if limits is None:
        return
    limit = limits.max_vibe_chars if info.field_name == "vibe" else limits.max_prompt_chars
    if limit and len(value) > limit:
        raise ValueError(f"the {info.field_name} has {len(value)} characters; the limit is "
                         f"{limit}")


def _inlined(schema: dict[str, Any]) -> dict[str, Any]:
    """A model's JSON schema with its ``$defs`` (the enums) written in place: it is embedded in
    the OpenAPI document, where ``#/$defs/...`` points nowhere."""
    defs = schema.pop("$defs", {})

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            if ref.startswith("#/$defs/"):
                rest = {k: walk(v) for k, v in node.items() if k != "$ref"}
                return {**walk(defs[ref.removeprefix("#/$defs/")]), **rest}
            return {k: walk(v) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    return walk(schema)


# The request-body documentation of /generate and /jobs (one endpoint, two content types).
OPENAPI_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": _inlined(PromptRequest.model_json_schema())},
            "multipart/form-data": {"schema": {
                "type": "object", "required": ["image"],
                "properties": {
                    "image": {"type": "string", "format": "binary",
                              "description": "A photo (PNG, JPEG, WebP...): the image-to-3D "
                                             "path, no image generation and no key needed."},
                    "vibe": {"type": "string", "pattern": TEXT_PATTERN},
                    "mode": {"type": "string", "enum": [str(m) for m in Mode],
                             "default": str(Mode.STANDARD)},
                    "prompt": {"type": "string", "pattern": TEXT_PATTERN,
                               "description": "An optional caption."},
                    "quality": {"type": "string", "enum": [str(q) for q in QUALITIES],
                                "default": str(DEFAULT_QUALITY)},
                    "edges": {"type": "string", "description": EDGES_DESCRIPTION},
                },
            }},
        },
    },
}


@dataclass
class Submission:
    inputs: JobInputs
    # Identifies the request's content (never the key) for idempotency checks.
    fingerprint: str
    # The limits it was checked against (the same for the whole request).
    limits: RequestLimits
    image_bytes: bytes | None = None


def limits_now(request: Request) -> RequestLimits:
    """The request limits in force: the orchestrator's settings and what the services advertise
    (kept fresh by the app's ``ModelServices``)."""
    return request.app.state.runtime.services.limits


async def read_submission(request: Request, settings: Settings) -> Submission:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "application/json":
        return await _read_json(request, settings)
    if content_type == "multipart/form-data":
        return await _read_multipart(request, settings)
    raise ApiError(415, "send application/json with a prompt, or multipart/form-data with an "
                        f"image file (got {content_type or 'no content type'})")


def _validation_error(exc: ValidationError, prefix: tuple[str, ...]) -> RequestValidationError:
    # No "input" in the errors: it can be the whole body, and the body can hold the key.
    errors = [{"type": e["type"], "loc": (*prefix, *e["loc"]), "msg": e["msg"]}
              for e in exc.errors(include_url=False, include_input=False, include_context=False)]
    return RequestValidationError(errors)


async def _read_json(request: Request, settings: Settings) -> Submission:
    raw = await request.body()
    try:
        # pydantic's parser, not the json module's: it stops at a nesting depth limit with a
        # ValueError, where json.loads recurses into a RecursionError (a 500, connection lost),
        # and it refuses NaN and Infinity, which are not JSON.
        data = pydantic_core.from_json(raw, allow_inf_nan=False)
    except ValueError as exc:
        raise RequestValidationError([{"type": "json_invalid", "loc": ("body",),
                                       "msg": f"the body is not valid JSON: {exc}"}]) from None
    try:
        limits = limits_now(request)
        body = PromptRequest.model_validate(data, context={"limits": limits})
    except ValidationError as exc:
        raise _validation_error(exc, ("body",)) from None
    key = body.openai_api_key.get_secret_value() if body.openai_api_key else None
    key = key or openai_key_from_headers(request)
    if not key:
        raise ApiError(401, "an OpenAI API key is needed to generate an image from a prompt: send "
                            "it as `Authorization: Bearer <key>`, `X-OpenAI-Key` or "
                            "`openai_api_key`; or upload a photo instead",
                       headers={"WWW-Authenticate": "Bearer"})
    inputs = JobInputs(source=Source.PROMPT, mode=body.mode, prompt=body.prompt, vibe=body.vibe,
                       openai_api_key=key, quality=body.quality, edges=body.edges)
    return Submission(inputs, _fingerprint(Source.PROMPT, body.prompt, body.vibe, body.mode, None,
                                           body.quality, edges=body.edges), limits)


def openai_key_from_headers(request: Request) -> str | None:
    key = request.headers.get("x-openai-key", "").strip()
    if key:
        return key
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    return None


async def _read_multipart(request: Request, settings: Settings) -> Submission:
    form = await request.form(max_files=1, max_fields=8, max_part_size=64 * 1024)
    try:
        upload = form.get("image")
        if not isinstance(upload, UploadFile):
            raise RequestValidationError([{
                "type": "missing", "loc": ("body", "image"),
                "msg": "an image file is required (multipart field `image`)"}])
        fields = {k: v for k, v in form.multi_items() if k != "image"}
        if any(not isinstance(v, str) for v in fields.values()):
            raise RequestValidationError([{"type": "value_error", "loc": ("body",),
                                           "msg": "only the `image` field may be a file"}])
        try:
            limits = limits_now(request)
            values = UploadFields.model_validate(fields, context={"limits": limits})
        except ValidationError as exc:
            raise _validation_error(exc, ("body",)) from None
        data = await upload.read(settings.max_upload_bytes + 1)
    finally:
        await form.close()
    if len(data) > settings.max_upload_bytes:
        raise ApiError(413, f"the image is over the upload limit of {settings.max_upload_bytes} "
                            "bytes")
    if not data:
        raise ApiError(400, "the uploaded image is empty (0 bytes)")
    inputs = JobInputs(source=Source.UPLOAD, mode=values.mode, prompt=values.prompt or None,
                       vibe=values.vibe, quality=values.quality, edges=values.edges)
    digest = hashlib.sha256(data).hexdigest()
    fingerprint = _fingerprint(Source.UPLOAD, values.prompt, values.vibe, values.mode, digest,
                               values.quality, edges=values.edges)
    return Submission(inputs, fingerprint, limits, image_bytes=data)


async def decode_upload(submission: Submission) -> None:
    """Decode the uploaded image (in a thread), checking it is an image within the limits the
    submission was read with (``submission.limits``)."""
    try:
        rgb = await blocking(decode_image_bytes, submission.image_bytes,
                             max_pixels=pixel_cap(submission.limits.max_image_pixels))
    except ImageTooLarge as exc:
        raise ApiError(413, f"the uploaded {exc}") from None
    except InvalidInput as exc:
        raise ApiError(400, f"the uploaded image cannot be used: {exc}") from None
    exif_focal_px = None
    if submission.inputs.mode == Mode.PANORAMA:
        check_panorama(rgb.shape[1], rgb.shape[0])
    else:
        exif_focal_px = await blocking(
            exif_focal_length_px, submission.image_bytes, rgb.shape[1], rgb.shape[0])
    submission.inputs = replace(submission.inputs, rgb=rgb, exif_focal_px=exif_focal_px)
    submission.image_bytes = None


def _fingerprint(source: Source, prompt: str | None, vibe: str, mode: Mode,
                 image_sha256: str | None, quality: Quality = DEFAULT_QUALITY, *,
                 edges: str | float | None = None) -> str:
    content: dict[str, Any] = {"source": str(source), "prompt": prompt, "vibe": vibe,
                               "mode": str(mode), "image_sha256": image_sha256}
    # Each only when not the default: fingerprints stored before it existed still match.
    if quality != DEFAULT_QUALITY:
        content["quality"] = str(quality)
    if edges is not None:
        content["edges"] = edges
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()

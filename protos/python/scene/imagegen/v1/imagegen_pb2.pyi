from scene.common.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GenerationMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    GENERATION_MODE_UNSPECIFIED: _ClassVar[GenerationMode]
    GENERATION_MODE_STANDARD: _ClassVar[GenerationMode]
    GENERATION_MODE_PANORAMA: _ClassVar[GenerationMode]
GENERATION_MODE_UNSPECIFIED: GenerationMode
GENERATION_MODE_STANDARD: GenerationMode
GENERATION_MODE_PANORAMA: GenerationMode

class GenerateImageRequest(_message.Message):
    __slots__ = ("prompt", "vibe", "mode", "openai_api_key", "width_px", "height_px", "request_id")
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    VIBE_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    OPENAI_API_KEY_FIELD_NUMBER: _ClassVar[int]
    WIDTH_PX_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_PX_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    prompt: str
    vibe: str
    mode: GenerationMode
    openai_api_key: str
    width_px: int
    height_px: int
    request_id: str
    def __init__(self, prompt: _Optional[str] = ..., vibe: _Optional[str] = ..., mode: _Optional[_Union[GenerationMode, str]] = ..., openai_api_key: _Optional[str] = ..., width_px: _Optional[int] = ..., height_px: _Optional[int] = ..., request_id: _Optional[str] = ...) -> None: ...

class GenerateImageResponse(_message.Message):
    __slots__ = ("image_png", "width_px", "height_px", "prompt_sent", "revised_prompt", "prompt", "vibe", "model_id", "seam_mad_before", "seam_mad_after", "timing_ms")
    class TimingMsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    IMAGE_PNG_FIELD_NUMBER: _ClassVar[int]
    WIDTH_PX_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_PX_FIELD_NUMBER: _ClassVar[int]
    PROMPT_SENT_FIELD_NUMBER: _ClassVar[int]
    REVISED_PROMPT_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    VIBE_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    SEAM_MAD_BEFORE_FIELD_NUMBER: _ClassVar[int]
    SEAM_MAD_AFTER_FIELD_NUMBER: _ClassVar[int]
    TIMING_MS_FIELD_NUMBER: _ClassVar[int]
    image_png: bytes
    width_px: int
    height_px: int
    prompt_sent: str
    revised_prompt: str
    prompt: str
    vibe: str
    model_id: str
    seam_mad_before: float
    seam_mad_after: float
    timing_ms: _containers.ScalarMap[str, float]
    def __init__(self, image_png: _Optional[bytes] = ..., width_px: _Optional[int] = ..., height_px: _Optional[int] = ..., prompt_sent: _Optional[str] = ..., revised_prompt: _Optional[str] = ..., prompt: _Optional[str] = ..., vibe: _Optional[str] = ..., model_id: _Optional[str] = ..., seam_mad_before: _Optional[float] = ..., seam_mad_after: _Optional[float] = ..., timing_ms: _Optional[_Mapping[str, float]] = ...) -> None: ...

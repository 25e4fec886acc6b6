from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DTYPE_UNSPECIFIED: _ClassVar[DType]
    DTYPE_UINT8: _ClassVar[DType]
    DTYPE_UINT16: _ClassVar[DType]
    DTYPE_INT32: _ClassVar[DType]
    DTYPE_FLOAT16: _ClassVar[DType]
    DTYPE_FLOAT32: _ClassVar[DType]
DTYPE_UNSPECIFIED: DType
DTYPE_UINT8: DType
DTYPE_UINT16: DType
DTYPE_INT32: DType
DTYPE_FLOAT16: DType
DTYPE_FLOAT32: DType

class Array(_message.Message):
    __slots__ = ("data", "shape", "dtype")
    DATA_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    shape: _containers.RepeatedScalarFieldContainer[int]
    dtype: DType
    def __init__(self, data: _Optional[bytes] = ..., shape: _Optional[_Iterable[int]] = ..., dtype: _Optional[_Union[DType, str]] = ...) -> None: ...

class Image(_message.Message):
    __slots__ = ("encoded", "rgb")
    ENCODED_FIELD_NUMBER: _ClassVar[int]
    RGB_FIELD_NUMBER: _ClassVar[int]
    encoded: bytes
    rgb: Array
    def __init__(self, encoded: _Optional[bytes] = ..., rgb: _Optional[_Union[Array, _Mapping]] = ...) -> None: ...

class Progress(_message.Message):
    __slots__ = ("stage", "done", "total", "fraction")
    STAGE_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    FRACTION_FIELD_NUMBER: _ClassVar[int]
    stage: str
    done: int
    total: int
    fraction: float
    def __init__(self, stage: _Optional[str] = ..., done: _Optional[int] = ..., total: _Optional[int] = ..., fraction: _Optional[float] = ...) -> None: ...

class GetInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("role", "requested_model_id", "model_id", "loaded", "loading", "fallback", "device", "dtype", "load_time_s", "last_error", "licence", "licence_source", "commercial_use", "licence_note")
    ROLE_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    LOADED_FIELD_NUMBER: _ClassVar[int]
    LOADING_FIELD_NUMBER: _ClassVar[int]
    FALLBACK_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    LOAD_TIME_S_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    LICENCE_FIELD_NUMBER: _ClassVar[int]
    LICENCE_SOURCE_FIELD_NUMBER: _ClassVar[int]
    COMMERCIAL_USE_FIELD_NUMBER: _ClassVar[int]
    LICENCE_NOTE_FIELD_NUMBER: _ClassVar[int]
    role: str
    requested_model_id: str
    model_id: str
    loaded: bool
    loading: bool
    fallback: bool
    device: str
    dtype: str
    load_time_s: float
    last_error: str
    licence: str
    licence_source: str
    commercial_use: bool
    licence_note: str
    def __init__(self, role: _Optional[str] = ..., requested_model_id: _Optional[str] = ..., model_id: _Optional[str] = ..., loaded: _Optional[bool] = ..., loading: _Optional[bool] = ..., fallback: _Optional[bool] = ..., device: _Optional[str] = ..., dtype: _Optional[str] = ..., load_time_s: _Optional[float] = ..., last_error: _Optional[str] = ..., licence: _Optional[str] = ..., licence_source: _Optional[str] = ..., commercial_use: _Optional[bool] = ..., licence_note: _Optional[str] = ...) -> None: ...

class Limits(_message.Message):
    __slots__ = ("max_image_pixels", "max_prompt_chars", "max_vibe_chars", "max_message_bytes")
    MAX_IMAGE_PIXELS_FIELD_NUMBER: _ClassVar[int]
    MAX_PROMPT_CHARS_FIELD_NUMBER: _ClassVar[int]
    MAX_VIBE_CHARS_FIELD_NUMBER: _ClassVar[int]
    MAX_MESSAGE_BYTES_FIELD_NUMBER: _ClassVar[int]
    max_image_pixels: int
    max_prompt_chars: int
    max_vibe_chars: int
    max_message_bytes: int
    def __init__(self, max_image_pixels: _Optional[int] = ..., max_prompt_chars: _Optional[int] = ..., max_vibe_chars: _Optional[int] = ..., max_message_bytes: _Optional[int] = ...) -> None: ...

class GetInfoResponse(_message.Message):
    __slots__ = ("service", "version", "models", "cpu_threads", "limits")
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    CPU_THREADS_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    service: str
    version: str
    models: _containers.RepeatedCompositeFieldContainer[ModelInfo]
    cpu_threads: int
    limits: Limits
    def __init__(self, service: _Optional[str] = ..., version: _Optional[str] = ..., models: _Optional[_Iterable[_Union[ModelInfo, _Mapping]]] = ..., cpu_threads: _Optional[int] = ..., limits: _Optional[_Union[Limits, _Mapping]] = ...) -> None: ...

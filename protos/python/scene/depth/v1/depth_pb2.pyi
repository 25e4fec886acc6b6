from scene.common.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TilingMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TILING_MODE_UNSPECIFIED: _ClassVar[TilingMode]
    TILING_MODE_OFF: _ClassVar[TilingMode]
    TILING_MODE_AUTO: _ClassVar[TilingMode]
    TILING_MODE_FORCED: _ClassVar[TilingMode]
TILING_MODE_UNSPECIFIED: TilingMode
TILING_MODE_OFF: TilingMode
TILING_MODE_AUTO: TilingMode
TILING_MODE_FORCED: TilingMode

class EstimateDepthRequest(_message.Message):
    __slots__ = ("image", "panorama", "tiling", "tile_size_px", "tile_overlap_fraction", "request_id", "max_input_side_px")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    PANORAMA_FIELD_NUMBER: _ClassVar[int]
    TILING_FIELD_NUMBER: _ClassVar[int]
    TILE_SIZE_PX_FIELD_NUMBER: _ClassVar[int]
    TILE_OVERLAP_FRACTION_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    MAX_INPUT_SIDE_PX_FIELD_NUMBER: _ClassVar[int]
    image: _common_pb2.Image
    panorama: bool
    tiling: TilingMode
    tile_size_px: int
    tile_overlap_fraction: float
    request_id: str
    max_input_side_px: int
    def __init__(self, image: _Optional[_Union[_common_pb2.Image, _Mapping]] = ..., panorama: _Optional[bool] = ..., tiling: _Optional[_Union[TilingMode, str]] = ..., tile_size_px: _Optional[int] = ..., tile_overlap_fraction: _Optional[float] = ..., request_id: _Optional[str] = ..., max_input_side_px: _Optional[int] = ...) -> None: ...

class EstimateDepthResponse(_message.Message):
    __slots__ = ("normalized_depth", "depth_m", "focal_length_px", "horizontal_fov_deg", "model_id", "width_px", "height_px", "tile_count", "timing_ms")
    class TimingMsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    NORMALIZED_DEPTH_FIELD_NUMBER: _ClassVar[int]
    DEPTH_M_FIELD_NUMBER: _ClassVar[int]
    FOCAL_LENGTH_PX_FIELD_NUMBER: _ClassVar[int]
    HORIZONTAL_FOV_DEG_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    WIDTH_PX_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_PX_FIELD_NUMBER: _ClassVar[int]
    TILE_COUNT_FIELD_NUMBER: _ClassVar[int]
    TIMING_MS_FIELD_NUMBER: _ClassVar[int]
    normalized_depth: _common_pb2.Array
    depth_m: _common_pb2.Array
    focal_length_px: float
    horizontal_fov_deg: float
    model_id: str
    width_px: int
    height_px: int
    tile_count: int
    timing_ms: _containers.ScalarMap[str, float]
    def __init__(self, normalized_depth: _Optional[_Union[_common_pb2.Array, _Mapping]] = ..., depth_m: _Optional[_Union[_common_pb2.Array, _Mapping]] = ..., focal_length_px: _Optional[float] = ..., horizontal_fov_deg: _Optional[float] = ..., model_id: _Optional[str] = ..., width_px: _Optional[int] = ..., height_px: _Optional[int] = ..., tile_count: _Optional[int] = ..., timing_ms: _Optional[_Mapping[str, float]] = ...) -> None: ...

class EstimateDepthEvent(_message.Message):
    __slots__ = ("progress", "result")
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    progress: _common_pb2.Progress
    result: EstimateDepthResponse
    def __init__(self, progress: _Optional[_Union[_common_pb2.Progress, _Mapping]] = ..., result: _Optional[_Union[EstimateDepthResponse, _Mapping]] = ...) -> None: ...

from scene.common.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SegmentMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SEGMENT_MODE_UNSPECIFIED: _ClassVar[SegmentMode]
    SEGMENT_MODE_HYBRID: _ClassVar[SegmentMode]
    SEGMENT_MODE_SEMANTIC: _ClassVar[SegmentMode]
    SEGMENT_MODE_SAM: _ClassVar[SegmentMode]

class PromptStrategy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PROMPT_STRATEGY_UNSPECIFIED: _ClassVar[PromptStrategy]
    PROMPT_STRATEGY_GRID: _ClassVar[PromptStrategy]
    PROMPT_STRATEGY_SEMANTIC: _ClassVar[PromptStrategy]

class CropMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CROP_MODE_UNSPECIFIED: _ClassVar[CropMode]
    CROP_MODE_OFF: _ClassVar[CropMode]
    CROP_MODE_AUTO: _ClassVar[CropMode]
SEGMENT_MODE_UNSPECIFIED: SegmentMode
SEGMENT_MODE_HYBRID: SegmentMode
SEGMENT_MODE_SEMANTIC: SegmentMode
SEGMENT_MODE_SAM: SegmentMode
PROMPT_STRATEGY_UNSPECIFIED: PromptStrategy
PROMPT_STRATEGY_GRID: PromptStrategy
PROMPT_STRATEGY_SEMANTIC: PromptStrategy
CROP_MODE_UNSPECIFIED: CropMode
CROP_MODE_OFF: CropMode
CROP_MODE_AUTO: CropMode

class SegmentRequest(_message.Message):
    __slots__ = ("image", "panorama", "mode", "request_id", "points_per_side", "crop_points_per_side", "prompt_strategy", "crop_mode", "max_input_side_px")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    PANORAMA_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    POINTS_PER_SIDE_FIELD_NUMBER: _ClassVar[int]
    CROP_POINTS_PER_SIDE_FIELD_NUMBER: _ClassVar[int]
    PROMPT_STRATEGY_FIELD_NUMBER: _ClassVar[int]
    CROP_MODE_FIELD_NUMBER: _ClassVar[int]
    MAX_INPUT_SIDE_PX_FIELD_NUMBER: _ClassVar[int]
    image: _common_pb2.Image
    panorama: bool
    mode: SegmentMode
    request_id: str
    points_per_side: int
    crop_points_per_side: int
    prompt_strategy: PromptStrategy
    crop_mode: CropMode
    max_input_side_px: int
    def __init__(self, image: _Optional[_Union[_common_pb2.Image, _Mapping]] = ..., panorama: _Optional[bool] = ..., mode: _Optional[_Union[SegmentMode, str]] = ..., request_id: _Optional[str] = ..., points_per_side: _Optional[int] = ..., crop_points_per_side: _Optional[int] = ..., prompt_strategy: _Optional[_Union[PromptStrategy, str]] = ..., crop_mode: _Optional[_Union[CropMode, str]] = ..., max_input_side_px: _Optional[int] = ...) -> None: ...

class DetectedLabel(_message.Message):
    __slots__ = ("ade20k_id", "label", "pixel_fraction", "category")
    ADE20K_ID_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    PIXEL_FRACTION_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    ade20k_id: int
    label: str
    pixel_fraction: float
    category: int
    def __init__(self, ade20k_id: _Optional[int] = ..., label: _Optional[str] = ..., pixel_fraction: _Optional[float] = ..., category: _Optional[int] = ...) -> None: ...

class SegmentResponse(_message.Message):
    __slots__ = ("categories", "labels", "mask_count", "mode", "sam_model_id", "semantic_model_id", "width_px", "height_px", "timing_ms", "prompt_count")
    class TimingMsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    CATEGORIES_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    MASK_COUNT_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    SAM_MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    SEMANTIC_MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    WIDTH_PX_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_PX_FIELD_NUMBER: _ClassVar[int]
    TIMING_MS_FIELD_NUMBER: _ClassVar[int]
    PROMPT_COUNT_FIELD_NUMBER: _ClassVar[int]
    categories: _common_pb2.Array
    labels: _containers.RepeatedCompositeFieldContainer[DetectedLabel]
    mask_count: int
    mode: SegmentMode
    sam_model_id: str
    semantic_model_id: str
    width_px: int
    height_px: int
    timing_ms: _containers.ScalarMap[str, float]
    prompt_count: int
    def __init__(self, categories: _Optional[_Union[_common_pb2.Array, _Mapping]] = ..., labels: _Optional[_Iterable[_Union[DetectedLabel, _Mapping]]] = ..., mask_count: _Optional[int] = ..., mode: _Optional[_Union[SegmentMode, str]] = ..., sam_model_id: _Optional[str] = ..., semantic_model_id: _Optional[str] = ..., width_px: _Optional[int] = ..., height_px: _Optional[int] = ..., timing_ms: _Optional[_Mapping[str, float]] = ..., prompt_count: _Optional[int] = ...) -> None: ...

class SegmentEvent(_message.Message):
    __slots__ = ("progress", "result")
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    progress: _common_pb2.Progress
    result: SegmentResponse
    def __init__(self, progress: _Optional[_Union[_common_pb2.Progress, _Mapping]] = ..., result: _Optional[_Union[SegmentResponse, _Mapping]] = ...) -> None: ...

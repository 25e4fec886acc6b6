"""Per-request quality: ``draft`` | ``standard`` | ``high``, mapped to the knobs each model service
takes per request, in this one table.

The profile (which models are loaded) is the operator's; the quality is the caller's, per
request, on whatever models are loaded:

- ``draft``: a quick look. Semantic segmentation only (no SAM2), one depth pass without tiling,
  the models see at most 512 px (1024 for a panorama), every second pixel becomes a point. A
  complete, labelled cloud, several times faster.
- ``standard`` (the default): SAM2 prompts placed from the semantic map; density, crops, depth
  tiling and input caps are the services' defaults, which the profile sizes for its models
  (``fast``: no depth tiles, no crops, density 8, <= 1024 px; ``quality``: density 16, crops and
  tiles as the image needs).
- ``high``: SAM2's dense uniform prompt grid (32 x 32 and 16 x 16 per crop), tiled depth, no cap.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from orchestrator.enums import Quality
from scene.depth.v1 import depth_pb2
from scene.segment.v1 import segment_pb2

QUALITIES: tuple[Quality, ...] = tuple(Quality)
DEFAULT_QUALITY = Quality.STANDARD


@dataclass(frozen=True)
class QualityKnobs:
    # segment_pb2.SegmentMode; UNSPECIFIED = the SEGMENT_MODE setting (else the service's).
    segment_mode: int
    # SAM2 prompt density on the whole image and on each crop; 0 = the service's default.
    points_per_side: int
    crop_points_per_side: int
    prompt_strategy: int  # segment_pb2.PromptStrategy
    crop_mode: int  # segment_pb2.CropMode
    depth_tiling: int  # depth_pb2.TilingMode
    # Longest side the models see (both services), for photos and for 2:1 panoramas; 0 = no cap.
    max_input_side_px: int
    panorama_max_input_side_px: int
    # Keep every n-th row and column at least (POINT_STRIDE may ask for more).
    point_stride: int

    def describe(self) -> dict[str, object]:
        """The knobs by name, as stored in metadata.json."""
        names = {
            "segment_mode": segment_pb2.SegmentMode.Name,
            "prompt_strategy": segment_pb2.PromptStrategy.Name,
            "crop_mode": segment_pb2.CropMode.Name,
            "depth_tiling": depth_pb2.TilingMode.Name,
        }
        return {k: names[k](v) if k in names else v for k, v in asdict(self).items()}


QUALITY_KNOBS: dict[Quality, QualityKnobs] = {
    Quality.DRAFT: QualityKnobs(
        segment_mode=segment_pb2.SEGMENT_MODE_SEMANTIC,
        points_per_side=0, crop_points_per_side=0,
        prompt_strategy=segment_pb2.PROMPT_STRATEGY_UNSPECIFIED,
        crop_mode=segment_pb2.CROP_MODE_OFF,
        depth_tiling=depth_pb2.TILING_MODE_OFF,
        max_input_side_px=512, panorama_max_input_side_px=1024,
        point_stride=2,
    ),
    # The services' defaults, which the profile sizes for its models (scene_rpc.profiles).
    Quality.STANDARD: QualityKnobs(
        segment_mode=segment_pb2.SEGMENT_MODE_UNSPECIFIED,
        points_per_side=0, crop_points_per_side=0,
        prompt_strategy=segment_pb2.PROMPT_STRATEGY_SEMANTIC,
        crop_mode=segment_pb2.CROP_MODE_UNSPECIFIED,
        depth_tiling=depth_pb2.TILING_MODE_UNSPECIFIED,
        max_input_side_px=0, panorama_max_input_side_px=0,
        point_stride=1,
    ),
    Quality.HIGH: QualityKnobs(
        segment_mode=segment_pb2.SEGMENT_MODE_UNSPECIFIED,
        points_per_side=32, crop_points_per_side=16,
        prompt_strategy=segment_pb2.PROMPT_STRATEGY_GRID,
        crop_mode=segment_pb2.CROP_MODE_AUTO,
        depth_tiling=depth_pb2.TILING_MODE_AUTO,
        max_input_side_px=0, panorama_max_input_side_px=0,
        point_stride=1,
    ),
}
assert tuple(QUALITY_KNOBS) == QUALITIES


def apply(quality: Quality, *, panorama: bool, depth: depth_pb2.EstimateDepthRequest,
          segment: segment_pb2.SegmentRequest) -> QualityKnobs:
    """Set ``quality``'s knobs on the two requests; returns the knobs."""
    knobs = QUALITY_KNOBS[quality]
    cap = knobs.panorama_max_input_side_px if panorama else knobs.max_input_side_px
    depth.tiling = knobs.depth_tiling
    depth.max_input_side_px = cap
    segment.mode = knobs.segment_mode
    segment.points_per_side = knobs.points_per_side
    segment.crop_points_per_side = knobs.crop_points_per_side
    segment.prompt_strategy = knobs.prompt_strategy
    segment.crop_mode = knobs.crop_mode
    segment.max_input_side_px = cap
    return knobs

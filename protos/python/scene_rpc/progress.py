"""The progress record every model service reports while it works, and its one converter to the
wire (``scene.common.v1.Progress``): the depth pipeline and the segmenter yield it, the servicers
send it."""

from __future__ import annotations

from dataclasses import dataclass

from scene.common.v1 import common_pb2


@dataclass(frozen=True)
class Progress:
    #: What is being done ("tiles", "views", "sam_encoder", "mask_decoding", ...).
    stage: str
    #: Units of the stage done and in total (tiles, prompt batches); total 0 = unknown.
    done: int
    total: int
    #: Of the whole request, in [0, 1].
    fraction: float


def progress_to_proto(progress: Progress) -> common_pb2.Progress:
    return common_pb2.Progress(stage=progress.stage, done=progress.done, total=progress.total,
                               fraction=progress.fraction)

"""What the pipeline and the job manager hand each other: the inputs of one generation, the
narrow progress callback the pipeline reports through, and the outcome it returns."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

import numpy as np

from orchestrator.enums import Geometry, Mode, OutputFormat, Quality, Source
from orchestrator.records import GenerationResult


@dataclass(frozen=True)
class JobInputs:
    """What a job needs to run. The image and the key live only here, in memory, and are dropped
    when the job ends (:meth:`without_payload`)."""

    source: Source
    mode: Mode
    prompt: str | None
    vibe: str
    rgb: np.ndarray | None = field(default=None, repr=False)
    openai_api_key: str | None = field(default=None, repr=False)
    # Per-request quality (orchestrator.quality).
    quality: Quality = Quality.STANDARD
    # What POST /generate answers with (orchestrator.formats); None: a job, no body.
    output: OutputFormat | None = None
    # ?geometry= of POST /generate (a format that offers meshes: orchestrator.formats).
    geometry: Geometry = Geometry.POINTS
    # The request's `edges`: "keep", "drop" or a threshold; None = the EDGE_RTOL setting.
    edges: str | float | None = None
    # Focal length from the upload's EXIF, in pixels of the decoded image (None: none usable).
    exif_focal_px: float | None = None

    def __post_init__(self) -> None:
        # Callers may hand in the strings; the job holds the enums.
        object.__setattr__(self, "source", Source(self.source))
        object.__setattr__(self, "mode", Mode(self.mode))
        object.__setattr__(self, "quality", Quality(self.quality))
        object.__setattr__(self, "geometry", Geometry(self.geometry))
        if self.output is not None:
            object.__setattr__(self, "output", OutputFormat(self.output))

    def without_payload(self) -> JobInputs:
        return replace(self, rgb=None, openai_api_key=None)


class Progress(Protocol):
    """How the pipeline reports as it goes (the job implements it)."""

    def enter_stage(self, stage: str) -> None: ...

    def stage_progress(self, stage: str, fraction: float) -> None: ...

    def record_timing(self, step: str, seconds: float) -> None: ...


@dataclass(frozen=True)
class Outcome:
    """A generation ready to commit: its staged files, what the pipeline made of it (for its
    record), and the body POST /generate answers with (None for a job)."""

    staging: Path
    result: GenerationResult
    body: bytes | None = None

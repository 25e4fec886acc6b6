"""The stored record of a generation (its ``metadata.json``) and the views the API derives from it.

One model, :class:`GenerationRecord`, is what is written and read; :class:`Generation` is the
same without the job's bookkeeping (what ``GET /generations`` shows) and :class:`JobView` is the
job's state (``GET /jobs/{id}``, the SSE events). Reading is lenient so that records written by
earlier versions keep loading: unknown keys are ignored and missing ones take their defaults.
Writing is strict (:meth:`GenerationRecord.build`): a key the model does not know is a bug in
the code that made it, not something to drop silently.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from orchestrator.enums import Mode, Quality, Source, Status

log = logging.getLogger(__name__)



class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore")


class JobBookkeeping(_Lenient):
    """What the job manager needs across restarts; never shown by the API."""

    idempotency_key: str | None = None
    fingerprint: str | None = None
    # The id of the job's terminal event, so that a replay after a restart reuses it.
    last_event_id: int | None = None


class ImageSize(_Lenient):
    width: int
    height: int


class Label(_Lenient):
    label: str
    ade20k_id: int
    category: int
    category_name: str | None = None
    pixel_fraction: float


class ServiceRef(_Lenient):
    address: str
    version: str | None = None


class Edges(_Lenient):
    # None: every point kept (`edges: "keep"`).
    rtol: float | None = None
    dropped: int = 0


class Bounds(_Lenient):
    min: list[float]
    max: list[float]


class QualityKnobsRecord(_Lenient):
    """The knobs a quality level set on the model requests (orchestrator.quality), by name."""

    segment_mode: str
    points_per_side: int
    crop_points_per_side: int
    prompt_strategy: str
    crop_mode: str
    depth_tiling: str
    max_input_side_px: int
    panorama_max_input_side_px: int
    point_stride: int


# A JSON object defined by the PCLD format (pointcloud-lib's FORMAT.md), passed through as its
# header has it: the camera and the audio descriptors.
PcldObject = dict[str, Any]


class _JobFields(_Lenient):
    """What the job says of a generation: its request and its state."""

    id: str
    status: Status
    error: str | None = None
    error_status: int | None = None
    stage: str | None = None
    progress: float = 0.0
    prompt: str | None = None
    vibe: str = ""
    mode: Mode = Mode.STANDARD
    source: Source | None = None
    quality: Quality = Quality.STANDARD
    created_at: str = ""
    updated_at: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    timing_ms: dict[str, float] = Field(default_factory=dict)
    trace_id: str | None = None


class GenerationResult(_Lenient):
    """What the pipeline made (orchestrator.pipeline): each field is set once its step ran, and
    absent from a failed record that never got there."""

    models: dict[str, str | None] | None = Field(
        None, description="The model each service used: imagegen, depth, sam, semantic.")
    service_timing_ms: dict[str, dict[str, float]] | None = None
    transfer_ms: dict[str, float] | None = None
    revised_prompt: str | None = None
    image: ImageSize | None = None
    quality_knobs: QualityKnobsRecord | None = None
    segment_mode: str | None = None
    depth_is_metric: bool | None = None
    focal_length_px: float | None = None
    focal_source: str | None = None
    fov_deg: float | None = None
    tile_count: int | None = None
    labels: list[Label] | None = None
    services: dict[str, ServiceRef] | None = None
    point_count: int | None = None
    bounds: Bounds | None = None
    projection: str | None = None
    camera: PcldObject | None = Field(None, description="The PCLD header's camera.")
    edges: Edges | None = None
    point_stride: int | None = None
    descriptors: PcldObject | None = Field(
        None, description="The audio descriptors (pointcloud-lib's FORMAT.md).")
    assets: dict[str, int] | None = Field(None, description="Stored files and their sizes.")


class Generation(GenerationResult, _JobFields):
    """A generation as the API shows it: the record without the job's bookkeeping (the job's
    fields first, then the pipeline's)."""


class GenerationRecord(Generation):
    """``metadata.json``: the generation and its job's bookkeeping."""

    job: JobBookkeeping = Field(default_factory=JobBookkeeping)

    @model_validator(mode="before")
    @classmethod
    def _old_layout(cls, data: Any) -> Any:
        # Earlier versions' restart recovery meant to clear the job's last event id but wrote
        # None at the top level (with a stray queue_position, ignored like any unknown key):
        # that None is the event id the record should have.
        if isinstance(data, dict) and "last_event_id" in data:
            data = dict(data)
            job = dict(data.get("job") or {})
            job["last_event_id"] = data.pop("last_event_id")
            data["job"] = job
        return data

    @classmethod
    def build(cls, **fields: Any) -> GenerationRecord:
        """A new record from the code that makes one: unknown keys are refused."""
        unknown = set(fields) - set(cls.model_fields)
        if unknown:
            raise TypeError(f"not fields of the generation record: {sorted(unknown)}")
        return cls(**fields)

    @classmethod
    def from_json(cls, raw: bytes) -> GenerationRecord:
        """A stored record. A field whose stored shape this version does not accept (written
        by an older one) is left out with a warning rather than losing the whole record; only
        a record without a valid id and status is refused (ValueError)."""
        try:
            return cls.model_validate_json(raw)
        except ValidationError as exc:
            data = json.loads(raw)
            bad = {error["loc"][0] for error in exc.errors() if error["loc"]}
            if not isinstance(data, dict) or not bad or bad & {"id", "status"}:
                raise
            log.warning("record %s: fields %s left out (not in this version's shape)",
                        data.get("id"), sorted(bad))
            return cls.model_validate({k: v for k, v in data.items() if k not in bad})

    def public(self) -> Generation:
        # The fields are validated already: copied, not validated again (a page of records
        # goes through here).
        return Generation.model_construct(
            self.model_fields_set - {"job"},
            **{name: getattr(self, name) for name in Generation.model_fields})

    def to_json(self) -> bytes:
        return self.model_dump_json(indent=1).encode()


class JobLinks(BaseModel):
    status_url: str
    events_url: str
    result_url: str
    grid_result_url: str

    @classmethod
    def of(cls, job_id: str) -> JobLinks:
        return cls(status_url=f"/jobs/{job_id}", events_url=f"/jobs/{job_id}/events",
                   result_url=f"/generations/{job_id}/pointcloud.bin",
                   grid_result_url=f"/generations/{job_id}/pointcloud.bin?format=grid")


class JobView(JobLinks):
    """A job's state: ``GET /jobs/{id}``, the list and the data of each SSE event."""

    id: str
    status: Status
    stage: str | None = None
    progress: float = 0.0
    queue_position: int | None = Field(None, description="1 is the next to start.")
    stages: dict[str, float] = Field(default_factory=dict)
    timing_ms: dict[str, float] = Field(default_factory=dict)
    error: str | None = None
    error_status: int | None = None
    created_at: str = ""
    updated_at: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    prompt: str | None = None
    vibe: str = ""
    mode: Mode = Mode.STANDARD
    source: Source | None = None
    quality: Quality = Quality.STANDARD

    @classmethod
    def from_record(cls, record: GenerationRecord) -> JobView:
        """The view of a job no longer in memory (it ended before, or before a restart)."""
        fields = record.model_dump(include=set(cls.model_fields))
        return cls(**fields, **JobLinks.of(record.id).model_dump())


class JobAccepted(BaseModel):
    """The answer to ``POST /jobs``."""

    id: str
    status: Status
    status_url: str
    events_url: str
    result_url: str


class JobStats(BaseModel):
    running: int
    queued: int
    max_concurrent_jobs: int
    max_queued_jobs: int


class JobList(JobStats):
    items: list[JobView]


class GenerationList(BaseModel):
    items: list[Generation]
    total: int
    limit: int
    offset: int
    next_cursor: str | None = Field(
        None, description="Pass as `cursor` for the page after this one (null on the last "
                          "page): faster than a large `offset` on a large store.")


class ServiceHealth(BaseModel):
    """One model service as ``GET /health`` reports it (orchestrator.services)."""

    # Keys the services module adds later are shown as they are.
    model_config = ConfigDict(extra="allow")

    address: str
    status: str = Field(description="The gRPC health status, or the error's code.")
    serving: bool
    error: str | None = None
    info: dict[str, Any] | None = Field(None, description="The service's GetInfo.")


class HealthView(BaseModel):
    status: Literal["ok", "degraded"]
    reason: str | None = None
    version: str
    services: dict[str, ServiceHealth]
    jobs: JobStats

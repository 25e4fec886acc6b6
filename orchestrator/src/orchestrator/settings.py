"""Every setting of the orchestrator, read from the environment once (see the README's table)."""

from __future__ import annotations

import re
from enum import StrEnum
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from pointcloud import DEFAULT_EDGE_RTOL, MAX_EDGE_RTOL
from scene_rpc.images import DEFAULT_MAX_IMAGE_PIXELS
from scene_rpc.server import DEFAULT_MAX_MESSAGE_BYTES

# The published viewer, exactly; and any local development server (any port, localhost,
# 127.0.0.1 or [::1]) by pattern, since its port is whatever the developer's tool picked.
DEFAULT_CORS_ORIGINS = "https://captaingraybeard.github.io"
DEFAULT_CORS_ORIGIN_REGEX = r"http://(localhost|127\.0\.0\.1|\[::1\])(:[0-9]{1,5})?"
# What a browser sends as Origin: a scheme, a host and an optional port, nothing more.
_ORIGIN = re.compile(r"(https?)://(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?)"
                     r"(:[0-9]{1,5})?")


class SegmentModeSetting(StrEnum):
    """Which segmentation the orchestrator asks for; ``default`` leaves it to the service."""

    DEFAULT = "default"
    HYBRID = "hybrid"
    SEMANTIC = "semantic"
    SAM = "sam"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    orchestrator_host: str = "0.0.0.0"
    orchestrator_port: int = Field(8000, ge=0, le=65535)
    log_level: str = "INFO"
    # Seconds uvicorn lets in-flight requests finish after SIGTERM before closing them.
    shutdown_grace_s: float = Field(10.0, ge=0)

    # A gRPC address: host:port, a comma-separated list of host:port (balanced round robin),
    # or any gRPC target such as dns:///name:port.
    depth_service_addr: str = "localhost:50051"
    segment_service_addr: str = "localhost:50052"
    imagegen_service_addr: str = "localhost:50053"
    # Per-call deadlines. CPU inference of a large image takes minutes.
    depth_call_deadline_s: float = Field(600.0, gt=0)
    segment_call_deadline_s: float = Field(900.0, gt=0)
    # Longer than imagegen-service's own IMAGEGEN_DEADLINE_S (180), so its precise error wins.
    imagegen_call_deadline_s: float = Field(200.0, gt=0)
    health_timeout_s: float = Field(2.0, gt=0)
    # Calls in flight at once per downstream service (a CPU model server gains nothing from more).
    depth_concurrency: int = Field(1, ge=1)
    segment_concurrency: int = Field(1, ge=1)
    imagegen_concurrency: int = Field(4, ge=1)
    max_message_bytes: int = Field(DEFAULT_MAX_MESSAGE_BYTES, ge=4 * 1024 * 1024)
    segment_mode: SegmentModeSetting = SegmentModeSetting.DEFAULT

    data_dir: Path = Path("./data")
    # Where records and jobs live: empty = a SQLite file under DATA_DIR (one orchestrator per
    # data directory); postgresql://user:password@host/db = PostgreSQL, shared by any number of
    # orchestrators (the data directory then on a volume they all mount).
    database_url: str = Field("", repr=False)
    # How long a replica's claim on a job holds without renewal (renewed every third of it):
    # a replica that dies has its jobs taken up by another after this.
    job_lease_s: float = Field(15.0, gt=0)
    # How often a replica reads what other replicas wrote of a job: its events for a client
    # connected here, a cancellation asked for elsewhere.
    job_poll_s: float = Field(0.2, gt=0, le=5)
    # Browser origins allowed to call the API: a comma-separated list of exact origins
    # (scheme://host[:port], or "*" for any), and a regular expression matched against the whole
    # Origin header; an origin that either allows is allowed. Empty = none of that kind.
    cors_origins: str = DEFAULT_CORS_ORIGINS
    cors_origin_regex: str = DEFAULT_CORS_ORIGIN_REGEX

    max_upload_bytes: int = Field(25 * 1024 * 1024, ge=1)
    # The orchestrator's own request limits (0 = none of its own). The front door checks the
    # tightest of each and what the services advertise in GetInfo.limits (limits.py), so these
    # are a ceiling, not a copy of the services' values. 16 Mi pixels is the services' default;
    # the depth answer must also fit MAX_MESSAGE_BYTES (8 bytes a pixel).
    max_image_pixels: int = Field(DEFAULT_MAX_IMAGE_PIXELS, ge=0)
    max_prompt_chars: int = Field(4000, ge=0)
    max_vibe_chars: int = Field(300, ge=0)
    # How long a call waits for a model service's connection to become ready (a service that is
    # starting or restarting, or a channel still backing off from an earlier failed attempt)
    # before it is answered 503 naming the service. Inside the call's deadline.
    service_connect_grace_s: float = Field(5.0, ge=0)
    # How often the services' advertised limits are read again (also at start, after a failed
    # call and whenever a health probe gets an answer).
    limits_refresh_s: float = Field(30.0, gt=0)

    # Generations running at once; further submissions wait in a FIFO queue of this length.
    max_concurrent_jobs: int = Field(2, ge=1)
    max_queued_jobs: int = Field(32, ge=0)
    # Finished jobs kept in memory for event replay; older ones are answered from disk.
    job_history: int = Field(200, ge=1)
    sse_ping_s: float = Field(5.0, gt=0)
    idempotency_ttl_s: float = Field(24 * 3600.0, gt=0)

    # Mapping of normalised (relative) depth to metres when the model is not metric.
    near_m: float = Field(1.0, gt=0)
    far_m: float = Field(10.0, gt=0)
    point_stride: int = Field(1, ge=1)
    # 0 = no limit.
    max_points: int = Field(2048 * 1024, ge=0)
    png_compress_level: int = Field(1, ge=0, le=9)
    # GET /metrics (Prometheus); off, no metric is kept at all.
    metrics_enabled: bool = True
    # Tracing: empty = off, "console" = spans as JSON lines on stdout, else an OTLP/HTTP URL.
    trace_exporter: str = ""
    # HTTP gzip of the binary answers for clients that send Accept-Encoding: gzip (0 = off).
    # Level 1: the higher levels save a few percent of a PCLD v1 buffer at several times the
    # CPU (bench_grid.py); the grid variant is not gzipped (its images are compressed already).
    gzip_level: int = Field(1, ge=0, le=9)
    # Flying-pixel clean-up: relative depth range of a pixel's neighbourhood above which it is
    # dropped (pointcloud.edge_mask); 0 = keep every point. A request's `edges` overrides it.
    edge_rtol: float = Field(DEFAULT_EDGE_RTOL, ge=0, le=MAX_EDGE_RTOL)

    @field_validator("cors_origins")
    @classmethod
    def _valid_origins(cls, value: str) -> str:
        for origin in _split_origins(value):
            if origin != "*" and not _ORIGIN.fullmatch(origin):
                raise ValueError(
                    f"CORS_ORIGINS: {origin!r} is not an origin (scheme://host[:port], no path "
                    "or trailing slash); list exact origins separated by commas, and put a "
                    "pattern in CORS_ORIGIN_REGEX")
        return value

    @field_validator("cors_origin_regex")
    @classmethod
    def _valid_regex(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"CORS_ORIGIN_REGEX is not a valid regular expression: {exc}",
                             ) from exc
        return value

    @field_validator("far_m")
    @classmethod
    def _far_beyond_near(cls, value: float, info) -> float:
        near = info.data.get("near_m")
        if near is not None and value <= near:
            raise ValueError(f"FAR_M ({value}) must be greater than NEAR_M ({near})")
        return value

    @property
    def cors_origin_list(self) -> list[str]:
        return _split_origins(self.cors_origins)

    @property
    def generations_dir(self) -> Path:
        return self.data_dir / "generations"


def _split_origins(value: str) -> list[str]:
    return [origin.strip() for origin in value.split(",") if origin.strip()]

"""The settings every service shares, declared once; each service subclasses them with its own
environment prefix (``DEPTH_``, ``SEG_``, ``IMAGEGEN_``) and adds what is its own.

- :class:`ServiceSettings`: what any gRPC service of the stack reads (bind address, graceful
  stop, logging, metrics, tracing).
- :class:`ModelServiceSettings`: what a service that runs models adds (the stack-wide profile,
  device, threads, runtime, preload, input and message limits, load retries), with the checks
  they need.

Torch-free on purpose: a service validates its settings and configures logging before anything
imports torch (:class:`Runtime` is a plain enum; the runtime itself is ``scene_rpc.ml``).
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, ClassVar

from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from scene_rpc.images import DEFAULT_MAX_IMAGE_PIXELS
from scene_rpc.profiles import DEFAULT_PROFILE, Profile, apply_profile, get_profile
from scene_rpc.server import DEFAULT_MAX_MESSAGE_BYTES

# The constraints of two fields every service has with a default of its own.
Port = Annotated[int, Field(ge=0, le=65535)]
# Seconds in-flight requests may take to finish after SIGTERM.
GraceSeconds = Annotated[float, Field(ge=0)]


class Runtime(StrEnum):
    """What runs a model's forward pass (``scene_rpc.ml.accel``)."""

    #: OpenVINO on a CPU when it is installed (the measured winner), eager PyTorch elsewhere.
    AUTO = "auto"
    TORCH = "torch"
    OPENVINO = "openvino"


class Precision(StrEnum):
    """The dtype a model computes in (``scene_rpc.ml.torch_runtime.compute_dtype``)."""

    #: float16 on CUDA; bfloat16 on a CPU that computes it natively (AVX512-BF16 or AMX) for a
    #: service whose outputs were measured within the bounds of ``scripts/bench_precision.py``
    #: in it (segmentation, not depth); float32 otherwise.
    AUTO = "auto"
    FLOAT32 = "float32"
    BFLOAT16 = "bfloat16"


class ServiceSettings(BaseSettings):
    """Fields of every service; a subclass sets ``env_prefix`` and the defaults of ``port`` and
    ``grace_s``."""

    model_config = SettingsConfigDict(extra="ignore")

    host: str = "[::]"
    port: Port
    grace_s: GraceSeconds
    log_level: str = "INFO"
    # Prometheus metrics on their own HTTP port (/metrics); 0 = off.
    metrics_port: int = Field(0, ge=0, le=65535)
    # Tracing: empty = off, "console" = spans as JSON lines on stdout, else an OTLP/HTTP URL.
    trace_exporter: str = ""


class ModelServiceSettings(ServiceSettings):
    """Fields and checks of a service that runs models (depth, segment).

    A subclass names its response size per input pixel (:attr:`response_bytes_per_pixel`) and the
    settings its profile picks (:meth:`profile_values`).
    """

    model_config = SettingsConfigDict(frozen=True)

    #: Bytes of response per input pixel (the maps it returns), for the message-size check.
    response_bytes_per_pixel: ClassVar[int]
    #: Room in a response for everything that is not per pixel (labels, timings, envelope).
    response_envelope_bytes: ClassVar[int] = 1024 * 1024

    # The stack-wide model profile (scene_rpc.profiles): quality, balanced or fast. It picks the
    # service's models (and a few defaults) unless those are set explicitly. The one variable
    # every model service reads, so it has no service prefix.
    profile: str = Field(DEFAULT_PROFILE, validation_alias=AliasChoices("PROFILE", "profile"))
    # "auto" (CUDA > MPS > CPU) or a torch device string such as "cpu" or "cuda:1".
    device: str = "auto"
    # torch intra-op threads; 0 = one per available core. Compiled runtimes use as many.
    threads: int = Field(0, ge=0)
    # What runs the forward passes: "auto" = OpenVINO (float32) on a CPU, eager PyTorch on
    # CUDA/MPS; or torch, openvino. A model whose export fails under auto runs eagerly.
    runtime: Runtime = Runtime.AUTO
    # The compute dtype: "auto" = float16 on CUDA, bfloat16 on a CPU with native bfloat16
    # (AVX512-BF16 or AMX) where the service's outputs stay within bounds in it, float32
    # otherwise; "float32" opts out, "bfloat16" forces it.
    dtype: Precision = Precision.AUTO
    # Exported graphs of compiled runtimes, keyed by model, revision, config and runtime version.
    runtime_cache_dir: Path = Path("~/.cache/scene-server/compiled")
    # Load the models at startup (in the background) instead of on the first request.
    preload: bool = False
    # Checked against the header before any pixel is decompressed.
    max_pixels: int = Field(DEFAULT_MAX_IMAGE_PIXELS, ge=64)
    max_message_bytes: int = Field(DEFAULT_MAX_MESSAGE_BYTES, ge=4 * 1024 * 1024)
    # After a failed load, requests within this many seconds fail fast instead of reloading.
    load_retry_s: float = Field(30.0, ge=0)

    @classmethod
    def profile_values(cls, profile: Profile) -> dict[str, Any]:
        """The settings (by field name) ``profile`` gives this service unless set explicitly."""
        raise NotImplementedError

    @field_validator("profile")
    @classmethod
    def _known_profile(cls, value: str) -> str:
        return get_profile(value).name

    @model_validator(mode="after")
    def _models_from_profile(self) -> ModelServiceSettings:
        # An explicitly set model or default (even to the quality one) wins over the profile's.
        apply_profile(self, self.profile_values(get_profile(self.profile)))
        return self

    @model_validator(mode="after")
    def _responses_fit_in_a_message(self) -> ModelServiceSettings:
        needed = self.max_pixels * self.response_bytes_per_pixel + self.response_envelope_bytes
        if needed > self.max_message_bytes:
            prefix = self.model_config.get("env_prefix", "")
            raise ValueError(
                f"{prefix}MAX_PIXELS={self.max_pixels} needs responses of up to {needed} bytes, "
                f"over {prefix}MAX_MESSAGE_BYTES={self.max_message_bytes}"
            )
        return self

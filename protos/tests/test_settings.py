"""scene_rpc.settings: the shared service settings, and the rule that only scene_rpc.ml imports
torch."""

from __future__ import annotations

import subprocess
import sys
from typing import ClassVar

import pydantic
import pytest
from pydantic_settings import SettingsConfigDict

from scene_rpc.profiles import Profile
from scene_rpc.server import DEFAULT_MAX_MESSAGE_BYTES
from scene_rpc.settings import GraceSeconds, ModelServiceSettings, Port, Precision, Runtime

# Every module of scene_rpc but its ML runtime, imported in a fresh interpreter.
TORCH_FREE = """
import pkgutil, sys
import scene_rpc
for module in pkgutil.walk_packages(scene_rpc.__path__, "scene_rpc."):
    if not module.name.startswith("scene_rpc.ml"):
        __import__(module.name)
print(sorted(name for name in sys.modules if name == "torch" or name.startswith("torch.")))
"""


def test_nothing_in_scene_rpc_but_its_ml_runtime_imports_torch():
    out = subprocess.run([sys.executable, "-c", TORCH_FREE], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"


class ToySettings(ModelServiceSettings):
    """A model service of two bytes a pixel whose profile picks its model."""

    model_config = SettingsConfigDict(env_prefix="TOY_")
    response_bytes_per_pixel: ClassVar[int] = 2

    port: Port = 7000
    grace_s: GraceSeconds = 5.0
    model: str = "toy/large"

    @classmethod
    def profile_values(cls, profile: Profile) -> dict[str, object]:
        return {"model": f"toy/{profile.name}"}


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for name in ("PROFILE", "TOY_PORT", "TOY_RUNTIME", "TOY_MAX_PIXELS", "TOY_MODEL",
                 "TOY_DTYPE"):
        monkeypatch.delenv(name, raising=False)


def test_a_service_reads_the_shared_fields_with_its_own_prefix(monkeypatch):
    monkeypatch.setenv("TOY_PORT", "7100")
    monkeypatch.setenv("TOY_RUNTIME", "torch")
    settings = ToySettings()
    assert (settings.host, settings.port, settings.grace_s) == ("[::]", 7100, 5.0)
    assert settings.runtime is Runtime.TORCH and settings.device == "auto"
    assert settings.max_message_bytes == DEFAULT_MAX_MESSAGE_BYTES


def test_the_profile_picks_what_was_not_set_explicitly(monkeypatch):
    monkeypatch.setenv("PROFILE", "Fast")
    assert (ToySettings().profile, ToySettings().model) == ("fast", "toy/fast")
    monkeypatch.setenv("TOY_MODEL", "toy/mine")
    assert ToySettings().model == "toy/mine"
    with pytest.raises(pydantic.ValidationError, match="unknown profile"):
        ToySettings(profile="best")


def test_responses_must_fit_in_a_message_named_with_the_prefix():
    with pytest.raises(pydantic.ValidationError,
                       match=r"TOY_MAX_PIXELS=.* over TOY_MAX_MESSAGE_BYTES="):
        ToySettings(max_pixels=DEFAULT_MAX_MESSAGE_BYTES // 2)


def test_runtimes_are_named_and_onnx_is_gone():
    assert [runtime.value for runtime in Runtime] == ["auto", "torch", "openvino"]
    with pytest.raises(pydantic.ValidationError, match="runtime"):
        ToySettings(runtime="onnx")


def test_the_compute_dtype_is_auto_unless_a_service_opts_out(monkeypatch):
    assert ToySettings().dtype is Precision.AUTO
    monkeypatch.setenv("TOY_DTYPE", "float32")
    assert ToySettings().dtype is Precision.FLOAT32
    assert [precision.value for precision in Precision] == ["auto", "float32", "bfloat16"]
    with pytest.raises(pydantic.ValidationError, match="dtype"):
        ToySettings(dtype="float16")

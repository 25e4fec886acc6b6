from __future__ import annotations

import subprocess
import sys

import pydantic
import pytest

from depth_service.settings import Settings, TileMode
from scene_rpc.settings import Runtime


def test_defaults_follow_the_spec(monkeypatch):
    for name in ("DEPTH_MODEL", "DEPTH_FALLBACK_MODEL", "DEPTH_PORT", "DEPTH_TILE_MODE", "PROFILE",
                 "DEPTH_RUNTIME", "DEPTH_MAX_INPUT_SIDE_PX"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings()
    assert settings.model == "apple/DepthPro-hf"
    assert settings.fallback_model == "depth-anything/Depth-Anything-V2-Large-hf"
    assert (settings.host, settings.port, settings.device) == ("[::]", 50051, "auto")
    assert settings.tile_mode is TileMode.AUTO and not settings.preload
    assert settings.runtime is Runtime.AUTO and settings.max_input_side_px == 0


def test_the_runtime_is_chosen_by_name(monkeypatch):
    monkeypatch.setenv("DEPTH_RUNTIME", "openvino")
    monkeypatch.setenv("DEPTH_RUNTIME_CACHE_DIR", "/tmp/graphs")
    settings = Settings()
    assert settings.runtime is Runtime.OPENVINO and str(settings.runtime_cache_dir) == "/tmp/graphs"
    with pytest.raises(pydantic.ValidationError, match="runtime"):
        Settings(runtime="tensorrt")
    # ONNX Runtime was taken out: its name is refused like any other unknown one.
    with pytest.raises(pydantic.ValidationError, match="runtime"):
        Settings(runtime="onnx")


def test_environment_variables_use_the_depth_prefix(monkeypatch):
    monkeypatch.setenv("DEPTH_PORT", "6000")
    monkeypatch.setenv("DEPTH_TILE_MODE", "forced")
    monkeypatch.setenv("DEPTH_PRELOAD", "1")
    monkeypatch.setenv("DEPTH_FALLBACK_MODEL", "")
    settings = Settings()
    assert (settings.port, settings.tile_mode, settings.preload) == (6000, TileMode.FORCED, True)
    assert settings.fallback_model == ""


@pytest.mark.parametrize("field,value", [("tile_overlap", 0.6), ("tile_overlap", 0.0),
                                         ("tile_mode", "sometimes"), ("port", 70000)])
def test_invalid_values_are_refused(field, value):
    with pytest.raises(pydantic.ValidationError, match=field):
        Settings(**{field: value})


def test_the_pixel_limit_must_fit_responses_in_a_message():
    with pytest.raises(pydantic.ValidationError, match="DEPTH_MAX_MESSAGE_BYTES"):
        Settings(max_pixels=20_000_000, max_message_bytes=64 * 1024 * 1024)


@pytest.mark.parametrize("profile", ["quality", "balanced", "fast"])
def test_the_profile_picks_the_models_unless_they_are_set(monkeypatch, profile):
    from scene_rpc.profiles import PROFILES

    for name in ("DEPTH_MODEL", "DEPTH_FALLBACK_MODEL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PROFILE", profile.upper())
    settings = Settings()
    assert settings.profile == profile
    assert settings.model == PROFILES[profile].depth_model
    assert settings.fallback_model == PROFILES[profile].depth_fallback_model
    # An explicit model wins, even when it is the quality default; an empty fallback too.
    monkeypatch.setenv("DEPTH_MODEL", "apple/DepthPro-hf")
    monkeypatch.setenv("DEPTH_FALLBACK_MODEL", "")
    assert (Settings().model, Settings().fallback_model) == ("apple/DepthPro-hf", "")


def test_an_unknown_profile_stops_the_service_naming_the_valid_ones(monkeypatch):
    import subprocess
    import sys

    monkeypatch.setenv("PROFILE", "turbo")
    with pytest.raises(pydantic.ValidationError, match="quality, balanced, fast"):
        Settings()
    done = subprocess.run([sys.executable, "-m", "depth_service"], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 1
    assert "unknown profile 'turbo': valid profiles are quality, balanced, fast" in done.stderr
    assert "Traceback" not in done.stderr


def test_the_pixel_limit_is_the_one_every_image_service_shares():
    from scene_rpc.images import DEFAULT_MAX_IMAGE_PIXELS

    assert Settings().max_pixels == DEFAULT_MAX_IMAGE_PIXELS == 16_000_000


def test_the_settings_load_without_torch():
    # The entry point validates its settings and configures logging before torch is imported.
    code = "import sys, depth_service.__main__; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"

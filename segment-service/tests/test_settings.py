"""Settings come from SEG_* variables and SAM_MODEL, once, with the documented defaults."""

from __future__ import annotations

import subprocess
import sys

import pydantic
import pytest

from segment_service.settings import CropMode, Mode, PromptStrategy, Settings

_ENV = ("SAM_MODEL", "SEG_SAM_MODEL", "SEG_MODEL", "SEG_MODE", "SEG_PORT", "SEG_POINTS_PER_SIDE",
        "SEG_MAX_PIXELS", "SEG_MAX_MESSAGE_BYTES", "PROFILE", "SEG_PROMPT_STRATEGY",
        "SEG_CROP_MODE",
        "SEG_MAX_INPUT_SIDE_PX")


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for name in _ENV:
        monkeypatch.delenv(name, raising=False)


def test_defaults():
    settings = Settings()
    assert settings.port == 50052
    assert settings.host == "[::]"
    assert settings.sam_model == "facebook/sam2.1-hiera-large"
    assert settings.semantic_model == "facebook/maskformer-swin-large-ade"
    assert settings.mode is Mode.HYBRID
    assert settings.device == "auto"
    assert settings.prompt_strategy is PromptStrategy.SEMANTIC
    assert settings.crop_mode is CropMode.AUTO
    assert settings.max_input_side_px == 0


def test_environment(monkeypatch):
    monkeypatch.setenv("SAM_MODEL", "/models/sam")
    monkeypatch.setenv("SEG_MODEL", "nvidia/segformer-b5-finetuned-ade-640-640")
    monkeypatch.setenv("SEG_MODE", "semantic")
    monkeypatch.setenv("SEG_PORT", "6000")
    monkeypatch.setenv("SEG_POINTS_PER_SIDE", "16")
    settings = Settings()
    assert settings.sam_model == "/models/sam"
    assert settings.semantic_model == "nvidia/segformer-b5-finetuned-ade-640-640"
    assert settings.mode is Mode.SEMANTIC
    assert settings.port == 6000
    assert settings.points_per_side == 16


def test_bad_values_are_refused(monkeypatch):
    monkeypatch.setenv("SEG_MODE", "fast")
    with pytest.raises(pydantic.ValidationError):
        Settings()


def test_the_largest_response_must_fit_in_a_message(monkeypatch):
    monkeypatch.setenv("SEG_MAX_PIXELS", str(200_000_000))
    with pytest.raises(pydantic.ValidationError, match="SEG_MAX_MESSAGE_BYTES"):
        Settings()


@pytest.mark.parametrize("profile", ["quality", "balanced", "fast"])
def test_the_profile_picks_the_models_unless_they_are_set(monkeypatch, profile):
    from scene_rpc.profiles import PROFILES

    monkeypatch.setenv("PROFILE", profile)
    settings = Settings()
    assert (settings.sam_model, settings.semantic_model) == (
        PROFILES[profile].sam_model, PROFILES[profile].semantic_model)
    monkeypatch.setenv("SAM_MODEL", "facebook/sam2.1-hiera-large")
    monkeypatch.setenv("SEG_MODEL", "/models/mine")
    assert (Settings().sam_model, Settings().semantic_model) == (
        "facebook/sam2.1-hiera-large", "/models/mine")


def test_an_unknown_profile_stops_the_service_naming_the_valid_ones(monkeypatch):
    import subprocess
    import sys

    monkeypatch.setenv("PROFILE", "turbo")
    with pytest.raises(pydantic.ValidationError, match="quality, balanced, fast"):
        Settings()
    done = subprocess.run([sys.executable, "-m", "segment_service"], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 1
    assert "unknown profile 'turbo': valid profiles are quality, balanced, fast" in done.stderr


def test_quality_knob_defaults_from_the_environment(monkeypatch):
    monkeypatch.setenv("SEG_PROMPT_STRATEGY", "grid")
    monkeypatch.setenv("SEG_CROP_MODE", "off")
    monkeypatch.setenv("SEG_MAX_INPUT_SIDE_PX", "1024")
    settings = Settings()
    assert settings.prompt_strategy is PromptStrategy.GRID
    assert settings.crop_mode is CropMode.OFF
    assert settings.max_input_side_px == 1024


@pytest.mark.parametrize(("name", "value"), [("SEG_PROMPT_STRATEGY", "random"),
                                             ("SEG_CROP_MODE", "on"),
                                             ("SEG_MAX_INPUT_SIDE_PX", "16")])
def test_bad_quality_knob_defaults_are_refused(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(pydantic.ValidationError):
        Settings()



def test_the_pixel_limit_is_the_one_every_image_service_shares():
    from scene_rpc.images import DEFAULT_MAX_IMAGE_PIXELS

    assert Settings().max_pixels == DEFAULT_MAX_IMAGE_PIXELS == 16_000_000


def test_the_settings_load_without_torch():
    # The entry point validates its settings and configures logging before torch is imported.
    code = "import sys, segment_service.__main__; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"

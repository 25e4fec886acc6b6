import subprocess
import sys

import pytest
from pydantic import ValidationError

from imagegen_service.models import PROFILES, Size, profile_for
from imagegen_service.settings import OPENAI_API_BASE_URL, Settings


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for name in ("OPENAI_BASE_URL", "IMAGEGEN_MODEL", "IMAGEGEN_QUALITY", "IMAGEGEN_PORT",
                 "IMAGEGEN_SEAM_BAND_PX", "IMAGEGEN_DEADLINE_S"):
        monkeypatch.delenv(name, raising=False)


def test_defaults():
    settings = Settings()
    assert settings.port == 50053 and settings.host == "[::]"
    assert settings.model == "dall-e-3"
    assert settings.openai_base_url == OPENAI_API_BASE_URL
    assert not hasattr(settings, "api_key") and not hasattr(settings, "openai_api_key")


def test_environment(monkeypatch):
    monkeypatch.setenv("OPENAI_BASE_URL", "http://gateway.local/v1")
    monkeypatch.setenv("IMAGEGEN_MODEL", "gpt-image-1")
    monkeypatch.setenv("IMAGEGEN_QUALITY", "low")
    monkeypatch.setenv("IMAGEGEN_PORT", "6000")
    monkeypatch.setenv("IMAGEGEN_DEADLINE_S", "")  # empty = the default
    settings = Settings()
    assert settings.openai_base_url == "http://gateway.local/v1"
    assert settings.model == "gpt-image-1" and settings.quality == "low"
    assert settings.port == 6000 and settings.deadline_s == 180.0


@pytest.mark.parametrize(
    "overrides",
    [
        {"model": "dall-e-2"},
        {"model": "dall-e-3", "quality": "low"},
        {"seam_band_px": 63},
        {"seam_band_px": 1024},
        {"panorama_fit": "stretch"},
    ],
)
def test_bad_settings_are_refused_at_start_up(overrides):
    with pytest.raises(ValidationError):
        Settings(**overrides)


def test_model_profiles():
    assert profile_for("dall-e-3").landscape == Size(1792, 1024)
    assert profile_for("dall-e-3").widest == Size(1792, 1024)
    assert profile_for("gpt-image-1").landscape == Size(1536, 1024)
    assert profile_for("gpt-image-1").widest == Size(1536, 1024)
    for profile in PROFILES.values():
        assert profile.landscape in profile.sizes
    with pytest.raises(ValueError, match="supported"):
        profile_for("midjourney")


def test_text_limits_leave_room_for_the_template_within_the_models_limit():
    from imagegen_service.prompts import template_budget_chars

    dalle = Settings(model="dall-e-3")
    assert (dalle.max_prompt_chars, dalle.max_vibe_chars) == (4000, 300)
    # dall-e-3 takes 4,000 characters in all: the template and the longest vibe come off it.
    assert dalle.prompt_limit == 4000 - template_budget_chars() - 300
    # gpt-image-1 takes 32,000: the setting is the limit.
    assert Settings(model="gpt-image-1").prompt_limit == 4000
    with pytest.raises(ValidationError, match="IMAGEGEN_MAX_VIBE_CHARS=3900 leaves"):
        Settings(model="dall-e-3", max_vibe_chars=3900)


def test_text_limits_from_the_environment(monkeypatch):
    monkeypatch.setenv("IMAGEGEN_MAX_PROMPT_CHARS", "1000")
    monkeypatch.setenv("IMAGEGEN_MAX_VIBE_CHARS", "120")
    settings = Settings(model="dall-e-3")
    assert (settings.prompt_limit, settings.max_vibe_chars) == (1000, 120)


def test_the_pixel_limit_is_the_one_every_image_service_shares():
    from scene_rpc.images import DEFAULT_MAX_IMAGE_PIXELS

    assert Settings().max_image_pixels == DEFAULT_MAX_IMAGE_PIXELS == 16_000_000


def test_the_service_never_imports_torch():
    # It runs no model: its settings, logging and server come up without torch in the process.
    code = ("import pkgutil, sys, imagegen_service\n"
            "for module in pkgutil.walk_packages(imagegen_service.__path__, 'imagegen_service.'):\n"
            "    __import__(module.name)\n"
            "print('torch' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"

"""The profile table: every model it names has a licence read from its card, the open profile is
permissive throughout, and a profile's values yield to explicitly set ones (empty included)."""

from __future__ import annotations

import pytest
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from scene_rpc.profiles import (
    LICENCES,
    PERMISSIVE_LICENCES,
    PROFILES,
    apply_profile,
    get_profile,
    licence_of,
)


@pytest.mark.parametrize("name", list(PROFILES))
def test_every_model_of_every_profile_has_a_licence_with_its_source(name):
    for model_id in get_profile(name).models:
        licence = licence_of(model_id)
        assert licence is not None, f"{name}: no licence recorded for {model_id}"
        assert licence.source == f"https://huggingface.co/{model_id}"
        assert licence.licence
        # A restrictive licence says how, where its name alone does not.
        if licence.licence not in PERMISSIVE_LICENCES and licence.licence != "cc-by-nc-4.0":
            assert licence.note, model_id


def test_which_profiles_include_a_model_that_restricts_commercial_use():
    restricted = {name: bool(profile.restricted_models) for name, profile in PROFILES.items()}
    assert restricted == {"quality": True, "balanced": True, "fast": True, "open": False}
    # The open profile has a model for every role, each under a permissive licence.
    open_profile = get_profile("open")
    assert open_profile.depth_model and open_profile.sam_model and open_profile.semantic_model
    assert all(LICENCES[m].commercial_use for m in open_profile.models)


def test_an_unknown_model_has_no_licence_claimed_for_it():
    assert licence_of("/models/depth-anything") is None
    assert licence_of("someone/else") is None


class Tuned(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TUNED_", frozen=True)
    model: str = "big"
    fallback: str = "bigger"
    side: int = Field(0, ge=0)

    def model_post_init(self, context) -> None:
        apply_profile(self, {"model": "small", "fallback": "smaller", "side": 512})


def test_a_profile_fills_only_what_the_environment_left_unset(monkeypatch):
    assert (Tuned().model, Tuned().fallback, Tuned().side) == ("small", "smaller", 512)
    monkeypatch.setenv("TUNED_SIDE", "0")
    # Set to the default is set: the caller's choice wins.
    assert Tuned().side == 0


def test_an_empty_value_is_an_explicit_value(monkeypatch):
    """Deployment files therefore pass a variable only when the user set it (no ``${VAR:-}``):
    an empty DEPTH_FALLBACK_MODEL means "no fallback", not "the profile's"."""
    monkeypatch.setenv("TUNED_FALLBACK", "")
    assert (Tuned().model, Tuned().fallback) == ("small", "")

import pytest

from imagegen_service.prompts import (
    PANORAMA_TEMPLATE,
    STANDARD_TEMPLATE,
    Mode,
    build_prompt,
    check_text,
    clean_prompt,
    template_budget_chars,
)
from scene_rpc.errors import InvalidInput


def test_standard_prompt_weaves_in_the_vibe():
    built = build_prompt("a lighthouse on a cliff", "stormy, cinematic", Mode.STANDARD)
    assert built.text.startswith("a lighthouse on a cliff. Mood and style: stormy, cinematic.")
    assert "foreground, middle ground and background" in built.text
    assert built.overhead_chars == len(built.text) - len("a lighthouse on a cliff")


def test_no_vibe_means_no_vibe_clause():
    built = build_prompt("a lighthouse", "", Mode.STANDARD)
    assert "Mood and style" not in built.text
    assert "  " not in built.text


@pytest.mark.parametrize(
    "phrase",
    [
        "360-degree equirectangular panorama",
        "Equirectangular projection",
        "horizon is a straight line exactly at the vertical centre",
        "left and right edges join seamlessly",
        "No borders",
        "no text",
    ],
)
def test_panorama_prompt_asks_for_an_equirectangular_image(phrase):
    built = build_prompt("a desert canyon", "warm dusk", Mode.PANORAMA)
    assert phrase in built.text
    assert "a desert canyon. Mood and style: warm dusk." in built.text


def test_user_text_is_a_value_not_a_template():
    built = build_prompt("a {prompt} sign with {vibe_clause} and {0}", "{vibe}", Mode.PANORAMA)
    assert "a {prompt} sign with {vibe_clause} and {0}" in built.text
    assert "Mood and style: {vibe}." in built.text


def test_prompt_is_cleaned_to_one_line_without_a_trailing_full_stop():
    assert clean_prompt("  a red\n barn\t at noon.  ") == "a red barn at noon"
    assert clean_prompt(" \n\t ") == ""
    built = build_prompt("a red barn.", "", Mode.STANDARD)
    assert built.text.startswith("a red barn. A wide scene")


def test_templates_are_plain_constants_with_the_documented_fields():
    for template in (STANDARD_TEMPLATE, PANORAMA_TEMPLATE):
        assert "{prompt}" in template and "{vibe_clause}" in template


def test_the_template_budget_covers_every_mode_with_a_vibe():
    budget = template_budget_chars()
    for mode in Mode:
        built = build_prompt("p" * 50, "v" * 30, mode)
        assert len(built.text) - 50 - 30 <= budget
    assert len(build_prompt("p" * 50, "v" * 30, Mode.PANORAMA).text) - 80 == budget


@pytest.mark.parametrize("text", ["a\x00b", "fog\x1b[31m", "x\x7f", "bell\x07"])
def test_control_characters_are_refused(text):
    with pytest.raises(InvalidInput, match="control character U\\+00"):
        check_text("prompt", text, 100)


def test_whitespace_and_non_ascii_are_text():
    check_text("vibe", "calme,\tbrumeux\nnuit 🌙 – sérénité\r", 100)
    with pytest.raises(InvalidInput, match="is 101 characters; at most 100"):
        check_text("vibe", "v" * 101, 100)

"""The prompt templates: the only place where the text sent to the image model is composed.

Edit the constants below to change what the model is asked for; ``build_prompt`` only fills them
in. The user's prompt and vibe are inserted as values and never parsed as templates, so braces in
them are harmless.

Standard mode asks for a wide scene with depth layers, because the image goes on to depth
estimation and segmentation: a flat poster or a close-up gives them nothing to work with.

Panorama mode asks for an equirectangular projection the way such images are described in
captions (the wording models have seen): full 360 x 180 degrees, horizon on the centre line, the
left and right edges continuing into each other, and nothing that would break the projection
(borders, text, a frame). The model still cannot guarantee a seamless wrap, so the service also
cross-fades the edges afterwards (see ``panorama.py``).
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from enum import Enum

from scene_rpc.errors import InvalidInput


class Mode(Enum):
    STANDARD = "standard"
    PANORAMA = "panorama"


#: Woven into either template when the request has a vibe; empty otherwise.
VIBE_CLAUSE = " Mood and style: {vibe}."

STANDARD_TEMPLATE = (
    "{prompt}.{vibe_clause}"
    " A wide scene with a clear foreground, middle ground and background."
    " No text, captions or watermarks."
)

PANORAMA_TEMPLATE = (
    "A 360-degree equirectangular panorama of {prompt}.{vibe_clause}"
    " Equirectangular projection covering 360 degrees horizontally and 180 degrees vertically,"
    " as seen from a single point in the middle of the scene."
    " The horizon is a straight line exactly at the vertical centre of the image."
    " The left and right edges join seamlessly when the image wraps around."
    " No borders, no frame, no vignette, no text, no captions, no watermarks."
)

TEMPLATES = {Mode.STANDARD: STANDARD_TEMPLATE, Mode.PANORAMA: PANORAMA_TEMPLATE}


def template_budget_chars() -> int:
    """The most characters any template adds around the caller's prompt and vibe (with a vibe,
    in the wordiest mode): what the upstream model's prompt limit must leave room for."""
    return max(
        len(template.format(prompt="", vibe_clause=VIBE_CLAUSE.format(vibe="")))
        for template in TEMPLATES.values()
    )


# Whitespace controls are kept (the template collapses them); every other control character
# (NUL, ESC, DEL, ...) is refused rather than sent upstream.
_ALLOWED_CONTROLS = frozenset("\t\n\r")


def check_text(field: str, text: str, max_chars: int) -> None:
    """The caller's ``field`` (prompt or vibe): at most ``max_chars`` characters, no control
    characters. Raises InvalidInput naming the problem."""
    if len(text) > max_chars:
        raise InvalidInput(f"{field} is {len(text)} characters; at most {max_chars} are accepted")
    for position, char in enumerate(text):
        if char not in _ALLOWED_CONTROLS and unicodedata.category(char) == "Cc":
            raise InvalidInput(f"{field} contains the control character U+{ord(char):04X} at "
                               f"position {position}")


@dataclass(frozen=True)
class BuiltPrompt:
    #: The text sent upstream.
    text: str
    #: How many characters the template adds around the user's prompt (for error messages).
    overhead_chars: int


def _clean(text: str) -> str:
    # One line, no dangling full stop: the templates add their own punctuation.
    return " ".join(text.split()).rstrip(".").strip()


def build_prompt(prompt: str, vibe: str, mode: Mode) -> BuiltPrompt:
    """Fill the mode's template; ``prompt`` must not be empty once cleaned (callers check)."""
    prompt = _clean(prompt)
    vibe = _clean(vibe)
    vibe_clause = VIBE_CLAUSE.format(vibe=vibe) if vibe else ""
    text = TEMPLATES[mode].format(prompt=prompt, vibe_clause=vibe_clause)
    return BuiltPrompt(text=text, overhead_chars=len(text) - len(prompt))


def clean_prompt(prompt: str) -> str:
    """The prompt as the template will see it; empty means there is nothing to draw."""
    return _clean(prompt)

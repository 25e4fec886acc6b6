"""The six audio categories every point carries, and the one colour palette that draws them."""

from __future__ import annotations

import numpy as np

# Index order is part of the PCLD format: a point's `segment` byte is an index into this tuple.
CATEGORY_NAMES: tuple[str, ...] = (
    "BASS_SUBJECT",  # people, animals
    "MID_ORGANIC",  # trees, plants
    "HIGH_SKY",  # sky, clouds, lights
    "BEAT_GROUND",  # ground, water, terrain
    "MID_STRUCTURE",  # buildings, vehicles, furniture
    "LOW_AMBIENT",  # walls, everything else
)

LOW_AMBIENT = CATEGORY_NAMES.index("LOW_AMBIENT")

# Okabe-Ito colours: distinguishable with the common colour-vision deficiencies, and hues that
# read as their category (blue sky, green plants, earthy ground, grey background).
CATEGORY_PALETTE: np.ndarray = np.array(
    [
        [213, 94, 0],  # BASS_SUBJECT: vermillion
        [0, 158, 115],  # MID_ORGANIC: bluish green
        [86, 180, 233],  # HIGH_SKY: sky blue
        [230, 159, 0],  # BEAT_GROUND: orange
        [204, 121, 167],  # MID_STRUCTURE: reddish purple
        [153, 153, 153],  # LOW_AMBIENT: grey
    ],
    dtype=np.uint8,
)
CATEGORY_PALETTE.flags.writeable = False

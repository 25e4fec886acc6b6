"""EXIF focal lengths of uploaded photos, from synthetic EXIF written by Pillow."""

from __future__ import annotations

import io
import math

import pytest
from PIL import ExifTags, Image

from orchestrator.imaging import exif_focal_length_px

TAGS = ExifTags.Base


def photo(width: int = 400, height: int = 300, fmt: str = "JPEG", **tags) -> bytes:
    exif = Image.Exif()
    ifd = exif.get_ifd(ExifTags.IFD.Exif)
    for name, value in tags.items():
        ifd[TAGS[name]] = value
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (90, 120, 30)).save(buffer, format=fmt, exif=exif)
    return buffer.getvalue()


def test_35mm_equivalent_converts_over_the_diagonal():
    focal = exif_focal_length_px(photo(FocalLengthIn35mmFilm=26), 400, 300)
    assert focal == pytest.approx(26 * 500 / math.hypot(36, 24))


def test_focal_length_with_a_known_sensor():
    # A phone: 4.25 mm lens, 7000 px per cm of sensor, taken at 4000 px and resized to 400.
    data = photo(FocalLength=4.25, FocalPlaneXResolution=7000.0, FocalPlaneResolutionUnit=3,
                 ExifImageWidth=4000, ExifImageHeight=3000)
    assert exif_focal_length_px(data, 400, 300) == pytest.approx(4.25 * 700 * 0.1)


def test_35mm_wins_over_the_sensor_route():
    data = photo(FocalLengthIn35mmFilm=50, FocalLength=4.25, FocalPlaneXResolution=7000.0,
                 FocalPlaneResolutionUnit=3)
    assert exif_focal_length_px(data, 400, 300) == pytest.approx(50 * 500 / math.hypot(36, 24))


@pytest.mark.parametrize("tags", [
    {},
    {"FocalLengthIn35mmFilm": 0},
    {"FocalLength": 4.25},  # no sensor size: a focal length in mm alone says nothing in px
    {"FocalLengthIn35mmFilm": 1},  # a 172-degree view: absurd
    {"FocalLengthIn35mmFilm": 60000},  # 0.04 degrees
    {"FocalLength": -3.0, "FocalPlaneXResolution": 1000.0, "FocalPlaneResolutionUnit": 3},
    {"FocalLength": 4.0, "FocalPlaneXResolution": 1000.0, "FocalPlaneResolutionUnit": 9},
])
def test_missing_zero_negative_and_absurd_values_are_ignored(tags):
    assert exif_focal_length_px(photo(**tags), 400, 300) is None


def test_formats_without_exif_and_garbage_give_none():
    assert exif_focal_length_px(photo(fmt="PNG"), 400, 300) is None
    assert exif_focal_length_px(b"not an image", 400, 300) is None

import io

import numpy as np
import pytest
from PIL import Image

from scene.common.v1 import common_pb2
from scene_rpc.arrays import array_to_proto
from scene_rpc.errors import InvalidInput
from scene_rpc.images import decode_image, decode_image_bytes, encode_png, image_message

LIMIT = 4096 * 4096


def _encode(image: Image.Image, fmt: str = "PNG", **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def test_png_round_trip():
    rgb = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    np.testing.assert_array_equal(decode_image_bytes(encode_png(rgb), max_pixels=LIMIT), rgb)


@pytest.mark.parametrize("mode", ["L", "RGBA", "LA", "P", "I;16"])
def test_other_modes_become_rgb(mode):
    image = Image.new(mode, (16, 12))
    decoded = decode_image_bytes(_encode(image), max_pixels=LIMIT)
    assert decoded.shape == (12, 16, 3) and decoded.dtype == np.uint8


def test_transparent_pixels_are_flattened_on_white():
    image = Image.new("RGBA", (10, 10), (255, 0, 0, 0))
    decoded = decode_image_bytes(_encode(image), max_pixels=LIMIT)
    assert (decoded == 255).all()


def test_exif_orientation_is_applied():
    image = Image.new("RGB", (40, 20), (10, 200, 10))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated 90 degrees: displayed as portrait
    decoded = decode_image_bytes(_encode(image, "JPEG", exif=exif), max_pixels=LIMIT)
    assert decoded.shape[:2] == (40, 20)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"definitely not an image", "not a decodable image"),
        (_encode(Image.new("RGB", (1, 1))), "at least"),
    ],
)
def test_bad_bytes_are_invalid_input(data, message):
    with pytest.raises(InvalidInput, match=message):
        decode_image_bytes(data, max_pixels=LIMIT)


def test_truncated_image_is_invalid_input():
    data = _encode(Image.new("RGB", (64, 64), (1, 2, 3)), "JPEG")
    with pytest.raises(InvalidInput):
        decode_image_bytes(data[: len(data) // 2], max_pixels=LIMIT)


def test_pixel_limit_is_checked_before_decompression():
    # A decompression bomb: a tiny file that claims 20000 x 20000 pixels.
    bomb = _encode(Image.new("1", (20000, 20000)), optimize=True)
    assert len(bomb) < 200_000
    with pytest.raises(InvalidInput, match="over the limit"):
        decode_image_bytes(bomb, max_pixels=LIMIT)


def test_raw_rgb_message():
    rgb = np.full((9, 11, 3), 7, dtype=np.uint8)
    np.testing.assert_array_equal(decode_image(image_message(rgb), max_pixels=LIMIT), rgb)


def test_raw_message_must_be_three_channels():
    message = common_pb2.Image(rgb=array_to_proto(np.zeros((9, 9, 4), dtype=np.uint8)))
    with pytest.raises(InvalidInput, match=r"\[height, width, 3\]"):
        decode_image(message, max_pixels=LIMIT)


def test_missing_image_is_invalid_input():
    with pytest.raises(InvalidInput, match="no image"):
        decode_image(common_pb2.Image(), max_pixels=LIMIT)

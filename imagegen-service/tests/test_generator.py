import io

from PIL import Image

from imagegen_service.generator import intact_rgb_png_size


def encoded(mode: str, fmt: str = "PNG", size=(64, 32), **params) -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, "red" if mode != "L" else 128).save(buffer, format=fmt, **params)
    return buffer.getvalue()


def test_an_intact_rgb_png_passes_as_it_is():
    assert intact_rgb_png_size(encoded("RGB"), max_pixels=10_000) == (64, 32)


def test_anything_else_is_decoded_instead():
    assert intact_rgb_png_size(encoded("RGBA"), 10_000) is None
    assert intact_rgb_png_size(encoded("L"), 10_000) is None
    assert intact_rgb_png_size(encoded("RGB", "JPEG"), 10_000) is None
    assert intact_rgb_png_size(encoded("RGB", size=(200, 100)), 10_000) is None  # over the limit
    assert intact_rgb_png_size(b"not an image", 10_000) is None
    broken = bytearray(encoded("RGB", size=(64, 64)))
    broken[60] ^= 0xFF  # inside a chunk: its CRC no longer matches
    assert intact_rgb_png_size(bytes(broken), 10_000) is None
    rotated = Image.new("RGB", (64, 32))
    exif = rotated.getexif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    rotated.save(buffer, format="PNG", exif=exif)
    assert intact_rgb_png_size(buffer.getvalue(), 10_000) is None

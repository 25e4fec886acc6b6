"""Decoding untrusted input images into uint8 RGB arrays, with size limits checked before the
pixels are decompressed (a small file can claim gigapixels)."""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from scene.common.v1 import common_pb2
from scene_rpc.arrays import array_from_proto, array_to_proto
from scene_rpc.errors import ImageTooLarge, InvalidInput

# Smaller images carry no usable depth or segmentation and break models' patch embeddings.
MIN_SIDE_PX = 8

# The default pixel limit of every service that takes or makes an image (and of the orchestrator's
# own default), one number so that an image one accepts the next never refuses. Not 4096 x 4096
# (16,777,216): a depth response carries 8 bytes a pixel, and 16,777,216 of them plus the envelope
# do not fit the default 128 MiB gRPC message (scene_rpc.server.DEFAULT_MAX_MESSAGE_BYTES).
DEFAULT_MAX_IMAGE_PIXELS = 16_000_000


def check_size(width: int, height: int, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise ImageTooLarge(
            f"image is {width}x{height} = {width * height} pixels, over the limit of {max_pixels}"
        )
    if width < MIN_SIDE_PX or height < MIN_SIDE_PX:
        raise InvalidInput(
            f"image is {width}x{height}; both sides must be at least {MIN_SIDE_PX} pixels"
        )


def decode_image_bytes(data: bytes, *, max_pixels: int) -> np.ndarray:
    """PNG/JPEG/WebP/... bytes -> uint8 [H, W, 3] RGB, EXIF orientation applied.

    Raises InvalidInput for empty or undecodable bytes and for images outside the size limits
    (ImageTooLarge, a subclass, for those over ``max_pixels``).
    """
    if not data:
        raise InvalidInput("image is empty (0 bytes)")
    try:
        with warnings.catch_warnings():
            # We enforce our own pixel limit below, before any decompression.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            check_size(image.width, image.height, max_pixels)
            image.load()
    except InvalidInput:
        raise
    except Image.DecompressionBombError as exc:
        # PIL's own guard fires in open() for absurd sizes, before our check can run.
        raise ImageTooLarge(f"image is over the limit of {max_pixels} pixels: {exc}") from exc
    except UnidentifiedImageError as exc:
        raise InvalidInput(f"bytes are not a decodable image: {exc}") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise InvalidInput(f"image is corrupt or truncated: {exc}") from exc
    image = ImageOps.exif_transpose(image)
    check_size(image.width, image.height, max_pixels)
    if image.mode != "RGB":
        # RGBA/LA/P with transparency are flattened on white, not black, so that cut-outs
        # keep a plausible background.
        if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
            image = image.convert("RGBA")
            background = Image.new("RGBA", image.size, (255, 255, 255, 255))
            image = Image.alpha_composite(background, image)
        image = image.convert("RGB")
    return np.asarray(image, dtype=np.uint8)


def decode_image(message: common_pb2.Image, *, max_pixels: int) -> np.ndarray:
    """A ``scene.common.v1.Image`` (encoded or raw RGB) -> uint8 [H, W, 3]."""
    source = message.WhichOneof("source")
    if source == "encoded":
        return decode_image_bytes(message.encoded, max_pixels=max_pixels)
    if source == "rgb":
        try:
            rgb = array_from_proto(message.rgb, dtype=np.uint8, ndim=3)
        except ValueError as exc:
            raise InvalidInput(f"raw image: {exc}") from exc
        if rgb.shape[2] != 3:
            raise InvalidInput(f"raw image must be [height, width, 3], got {list(rgb.shape)}")
        check_size(rgb.shape[1], rgb.shape[0], max_pixels)
        return rgb
    raise InvalidInput("request has no image")


def encode_png(rgb: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def image_message(rgb: np.ndarray) -> common_pb2.Image:
    """Raw RGB pixels as an Image message: no encode/decode round trip for callers with pixels."""
    return common_pb2.Image(rgb=array_to_proto(np.ascontiguousarray(rgb, dtype=np.uint8)))

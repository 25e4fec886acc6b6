"""Add top-level keys to the header of an existing PCLD buffer, whatever its variant.

Some header keys describe what is only known once the cloud is packed (the audio descriptors
describe the packed positions). Attribute offsets count from the end of the header, so the
blocks can follow a longer header unchanged: this copies them verbatim (one copy, as
:func:`pointcloud.encode` makes) and never needs to know their layout.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from typing import Any

from pointcloud.codec import HEADER_KEYS, MAGIC, PREFIX_SIZE, decode

# The keys the format itself defines (FORMAT.md: v1's and the grid variant's, and the camera,
# which the writers set from the projection); anything else is an extension.
FORMAT_KEYS = HEADER_KEYS


def extension_keys(header: Mapping[str, Any]) -> dict[str, Any]:
    """The header's keys beyond the format's own (``camera``, ``descriptors``, ...)."""
    return {key: value for key, value in header.items() if key not in FORMAT_KEYS}


def extend_header(buffer: bytes | bytearray | memoryview, extra: Mapping[str, Any]) -> bytes:
    """``buffer`` (validated by :func:`pointcloud.decode`) with ``extra`` merged into its
    header; an existing extension key is replaced, a format key is refused (ValueError)."""
    clashes = sorted(str(key) for key in extra if key in FORMAT_KEYS)
    if clashes:
        raise ValueError(f"extra_header may not redefine format keys: {', '.join(clashes)}")
    view = memoryview(buffer).cast("B")
    header = decode(view).header
    # The version stays what it was: the blocks, whatever their layout, follow unchanged.
    version, old_length = struct.unpack_from("<II", view, 4)
    try:
        raw = json.dumps(
            {**header, **extra}, ensure_ascii=False, allow_nan=False, separators=(",", ":")
        ).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise ValueError(f"extra header keys are not JSON-serialisable: {exc}") from exc
    raw += b" " * (-len(raw) % 4)
    prefix = struct.pack("<4sII", MAGIC, version, len(raw))
    return b"".join((prefix, raw, view[PREFIX_SIZE + old_length :]))

"""extend_header: new top-level keys on an existing buffer of any variant, blocks untouched."""

from __future__ import annotations

import numpy as np
import pytest

from pointcloud import decode, encode, pack_equirect
from pointcloud.extend import FORMAT_KEYS, extend_header, extension_keys


@pytest.mark.parametrize("quantized", [False, True])
def test_keys_are_added_and_the_blocks_kept(make_cloud, quantized: bool) -> None:
    cloud = make_cloud(77, seed=1)
    buffer = encode(cloud, mode="planar", cloud_id="c", metadata={"a": 1}, quantized=quantized,
                    extra_header={"origin": {"note": "x"}})
    extended = extend_header(buffer, {"descriptors": {"count": 77, "note": "é"}})
    before, after = decode(buffer), decode(extended)
    assert after.header == {**before.header, "descriptors": {"count": 77, "note": "é"}}
    np.testing.assert_array_equal(after.positions, before.positions)
    np.testing.assert_array_equal(after.colors, before.colors)
    np.testing.assert_array_equal(after.segments, before.segments)
    assert extension_keys(after.header) == {"origin": {"note": "x"},
                                            "descriptors": {"count": 77, "note": "é"}}
    # Replacing an extension key; the header stays 4-byte aligned.
    again = extend_header(extended, {"descriptors": None})
    assert decode(again).header["descriptors"] is None
    assert int.from_bytes(again[8:12], "little") % 4 == 0


def test_a_packed_buffer_and_an_empty_cloud(empty_cloud) -> None:
    packed = pack_equirect(np.full((4, 8), 0.5, np.float32), np.zeros((4, 8, 3), np.uint8),
                           cloud_id="p")
    assert decode(extend_header(packed, {"x": 1})).header["x"] == 1
    empty = encode(empty_cloud, mode="planar", cloud_id="e")
    assert decode(extend_header(empty, {"x": [1]})).count == 0


def test_format_keys_and_bad_values_are_refused(make_cloud) -> None:
    buffer = encode(make_cloud(3), mode="planar", cloud_id="c")
    for key in sorted(FORMAT_KEYS):
        with pytest.raises(ValueError, match=f"format keys: {key}"):
            extend_header(buffer, {key: 1})
    with pytest.raises(ValueError, match="not JSON-serialisable"):
        extend_header(buffer, {"x": float("nan")})
    with pytest.raises(ValueError, match="bad magic"):
        extend_header(b"XXXX" + buffer[4:], {"x": 1})

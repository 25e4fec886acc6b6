"""pack_*: projection straight into the final buffer gives what project_* + encode gives."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest

from pointcloud import decode, encode, pack_equirect, pack_planar, project_equirect, project_planar

CASES = [
    (pack_planar, project_planar, "planar", {"focal_length_px": 20.0, "near_m": 0.5, "far_m": 9}),
    (pack_planar, project_planar, "planar", {"depth_is_metric": True, "stride": 3}),
    (pack_equirect, project_equirect, "equirect", {}),
    (pack_equirect, project_equirect, "equirect", {"depth_is_metric": True, "max_points": 100}),
]


def inputs(with_holes: bool):
    rng = np.random.default_rng(7)
    depth = rng.uniform(0.05, 1, (24, 48)).astype(np.float32)
    if with_holes:
        depth[rng.random(depth.shape) < 0.2] = np.nan
    rgb = rng.integers(0, 256, (24, 48, 3), dtype=np.uint8)
    categories = rng.integers(0, 6, (24, 48), dtype=np.uint8)
    return depth, rgb, categories


@pytest.mark.parametrize("with_holes", [False, True])
@pytest.mark.parametrize(("pack", "project", "mode", "kwargs"), CASES)
def test_pack_equals_project_then_encode(pack, project, mode, kwargs, with_holes) -> None:
    depth, rgb, categories = inputs(with_holes)
    metadata = {"source": "test", "focal": np.float32(20.0)}
    packed = pack(depth, rgb, categories, cloud_id="g1", metadata=metadata, **kwargs)
    # encode() knows no camera of its own: the caller hands it the one pack_* wrote.
    reference = encode(
        project(depth, rgb, categories, **kwargs),
        mode=mode,
        cloud_id="g1",
        metadata=metadata,
        camera=decode(packed).header["camera"],
    )

    assert_same_pcld(packed, reference)


@pytest.mark.parametrize(("pack", "project", "mode", "kwargs"), CASES)
def test_pack_quantized_equals_encode_quantized(pack, project, mode, kwargs) -> None:
    depth, rgb, categories = inputs(with_holes=True)
    packed = pack(depth, rgb, categories, cloud_id="q", quantized=True, **kwargs)
    cloud = project(depth, rgb, categories, **kwargs)
    camera = decode(packed).header["camera"]
    assert_same_pcld(packed, encode(cloud, mode=mode, cloud_id="q", quantized=True, camera=camera))


def assert_same_pcld(packed: memoryview, reference: bytes) -> None:
    assert isinstance(packed, memoryview) and packed.readonly
    ours, theirs = decode(packed), decode(reference)
    assert ours.header == theirs.header
    assert np.array_equal(ours.positions, theirs.positions)
    assert np.array_equal(ours.colors, theirs.colors)
    assert np.array_equal(ours.segments, theirs.segments)
    # The body is byte for byte the same; only the header's space padding may differ.
    body = 12 + struct.unpack_from("<I", packed, 8)[0]
    reference_body = 12 + struct.unpack_from("<I", reference, 8)[0]
    assert packed[body:] == reference[reference_body:]
    assert json.loads(bytes(packed[12:body])) == json.loads(reference[12:reference_body])


def test_pack_header_is_padded_to_a_multiple_of_four() -> None:
    depth, rgb, _ = inputs(with_holes=False)
    packed = pack_planar(depth, rgb, cloud_id="pad")
    header_length = struct.unpack_from("<I", packed, 8)[0]
    assert header_length % 4 == 0
    assert bytes(packed[12 : 12 + header_length]).rstrip(b" ").endswith(b"}")


def test_pack_checks_its_inputs_before_projecting() -> None:
    depth, rgb, _ = inputs(with_holes=False)
    with pytest.raises(ValueError, match="rgb shape"):
        pack_planar(depth, rgb[:, :-1], cloud_id="x")
    with pytest.raises(ValueError, match="metadata is not JSON-serialisable"):
        pack_equirect(depth, rgb, cloud_id="x", metadata={"bad": object()})
    with pytest.raises(TypeError):
        pack_planar(depth, rgb, cloud_id="x", not_an_option=1)

"""PCLD v1: exact round trips, the layout the spec promises, the quantisation error bound, and a
clear ValueError for every malformed buffer."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from pointcloud import (
    CATEGORY_NAMES,
    CATEGORY_PALETTE,
    FORMAT_VERSION,
    QUANTIZATION_LEVELS,
    PointCloud,
    decode,
    encode,
)

FLOAT32_EPS = float(np.finfo(np.float32).eps)  # 2**-23


@st.composite
def clouds(draw: st.DrawFn, coordinates: st.SearchStrategy[float] | None = None) -> PointCloud:
    count = draw(st.integers(0, 40))
    elements = (
        st.floats(width=32, allow_nan=False, allow_infinity=False)
        if coordinates is None
        else coordinates
    )
    return PointCloud(
        positions=draw(hnp.arrays(np.float32, (count, 3), elements=elements)),
        colors=draw(hnp.arrays(np.uint8, (count, 3))),
        segments=draw(hnp.arrays(np.uint8, count, elements=st.integers(0, 5))),
    )


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(), children, max_size=3)
    ),
    max_leaves=8,
)


def bits(array: np.ndarray) -> np.ndarray:
    """Compare floats bit for bit (-0.0 and 0.0 differ, as they do on the wire)."""
    return np.ascontiguousarray(array).view(np.uint32)


# --- round trips ----------------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(
    cloud=clouds(),
    mode=st.text(min_size=1),
    cloud_id=st.text(),
    metadata=st.dictionaries(st.text(), json_values, max_size=4),
)
def test_float_round_trip_is_exact(
    cloud: PointCloud, mode: str, cloud_id: str, metadata: dict
) -> None:
    decoded = decode(encode(cloud, mode=mode, cloud_id=cloud_id, metadata=metadata))

    assert np.array_equal(bits(decoded.positions), bits(cloud.positions))
    assert np.array_equal(decoded.colors, cloud.colors)
    assert np.array_equal(decoded.segments, cloud.segments)
    header = decoded.header
    assert (header["count"], header["mode"], header["id"]) == (cloud.count, mode, cloud_id)
    assert header["metadata"] == metadata
    lo, hi = cloud.bounds()
    assert header["bounds"] == {"min": lo.tolist(), "max": hi.tolist()}


@settings(max_examples=150, deadline=None)
@given(
    cloud=clouds(st.floats(-1e6, 1e6, width=32)),
    offset=st.sampled_from([0.0, 1e3, -5e4]),
)
def test_quantized_round_trip_stays_within_the_documented_bound(
    cloud: PointCloud, offset: float
) -> None:
    """FORMAT.md: |decoded - original| <= step / 2 + 2**-22 * max(|min|, |max|) + 2**-149."""
    positions = (cloud.positions + np.float32(offset)).astype(np.float32)
    cloud = PointCloud(positions, cloud.colors, cloud.segments)
    buffer = encode(cloud, mode="planar", cloud_id="q", quantized=True)
    decoded = decode(buffer)

    lo, hi = cloud.bounds()
    step = np.array(decoded.header["attributes"][0]["quantization"]["step"])
    assert (step * QUANTIZATION_LEVELS >= hi.astype(np.float64) - lo).all()
    magnitude = np.maximum(np.abs(lo), np.abs(hi)).astype(np.float64)
    bound = step / 2 + 2.0**-22 * magnitude + 2.0**-149
    error = np.abs(decoded.positions.astype(np.float64) - positions)
    assert (error <= bound).all()
    assert np.array_equal(decoded.colors, cloud.colors)
    assert np.array_equal(decoded.segments, cloud.segments)
    assert len(buffer) == 12 + struct.unpack_from("<I", buffer, 8)[0] + 10 * cloud.count


def test_quantization_error_is_about_half_a_step_on_a_realistic_cloud(make_cloud) -> None:
    cloud = make_cloud(50_000, seed=3)
    decoded = decode(encode(cloud, mode="planar", cloud_id="q", quantized=True))
    lo, hi = cloud.bounds()
    half_step = (hi.astype(np.float64) - lo) / QUANTIZATION_LEVELS / 2
    float32_slack = 2.0**-22 * np.maximum(np.abs(lo), np.abs(hi))
    worst = np.abs(decoded.positions.astype(np.float64) - cloud.positions).max(axis=0)
    # Rounding to the nearest step: never more than half of one (plus float32 rounding of the
    # decoder's multiply-add), and close to it somewhere among 50,000 points.
    assert (worst <= half_step + float32_slack).all()
    assert (worst >= 0.9 * half_step).all()


@pytest.mark.parametrize("extent", [1e-45, 1e-40, 3e-39])
def test_subnormal_extents_stay_within_the_bound(extent: float) -> None:
    """Subnormal steps have little relative precision: the step is rounded up, so the largest
    coordinate still lands within half a step (a rounded-down step would clamp it)."""
    positions = np.array([[0, extent, 0], [extent, 0, extent / 3]], np.float32)
    cloud = PointCloud(positions, np.zeros((2, 3), np.uint8), np.zeros(2, np.uint8))
    decoded = decode(encode(cloud, mode="planar", cloud_id="tiny", quantized=True))
    step = np.array(decoded.header["attributes"][0]["quantization"]["step"])
    error = np.abs(decoded.positions.astype(np.float64) - positions)
    assert (error <= step / 2 + 2.0**-22 * extent + 2.0**-149).all()


def test_a_flat_axis_quantizes_exactly() -> None:
    positions = np.array([[1.5, 2.0, -3.0], [4.0, 2.0, -3.0]], np.float32)
    cloud = PointCloud(positions, np.zeros((2, 3), np.uint8), np.zeros(2, np.uint8))
    decoded = decode(encode(cloud, mode="planar", cloud_id="flat", quantized=True))
    assert np.array_equal(decoded.positions, positions)


def test_an_empty_cloud_round_trips(empty_cloud) -> None:
    for quantized in (False, True):
        decoded = decode(encode(empty_cloud, mode="planar", cloud_id="", quantized=quantized))
        assert decoded.count == 0
        assert decoded.header["bounds"] == {"min": [0.0, 0.0, 0.0], "max": [0.0, 0.0, 0.0]}


# --- layout ---------------------------------------------------------------------------------


def test_layout_matches_the_spec(make_cloud) -> None:
    cloud = make_cloud(7)
    buffer = encode(cloud, mode="equirect", cloud_id="abc", metadata={"focal_length_px": 500.0})

    assert buffer[:4] == b"PCLD"
    version, header_length = struct.unpack_from("<II", buffer, 4)
    assert version == FORMAT_VERSION == 1
    assert header_length % 4 == 0
    raw = buffer[12 : 12 + header_length]
    assert len(raw) - len(raw.rstrip(b" ")) < 4  # padded with spaces, no more than needed
    header = json.loads(raw)
    assert header["categories"] == list(CATEGORY_NAMES)
    assert header["palette"] == CATEGORY_PALETTE.tolist()
    assert header["metadata"] == {"focal_length_px": 500.0}
    assert header["attributes"] == [
        {"name": "position", "type": "float32", "components": 3, "offset": 0, "length": 84},
        {"name": "color", "type": "uint8", "components": 3, "offset": 84, "length": 21},
        {"name": "segment", "type": "uint8", "components": 1, "offset": 105, "length": 7},
    ]
    body = 12 + header_length
    assert body % 4 == 0  # float32 positions start aligned
    assert len(buffer) == body + 16 * 7
    positions = np.frombuffer(buffer, "<f4", 21, body).reshape(7, 3)
    assert np.array_equal(positions, cloud.positions)
    colors = np.frombuffer(buffer, np.uint8, 21, body + 84).reshape(7, 3)
    assert np.array_equal(colors, cloud.colors)
    assert np.array_equal(np.frombuffer(buffer, np.uint8, 7, body + 105), cloud.segments)


def test_quantized_layout_names_its_dequantization(make_cloud) -> None:
    cloud = make_cloud(5)
    header = decode(encode(cloud, mode="planar", cloud_id="q", quantized=True)).header
    position = header["attributes"][0]
    assert (position["type"], position["length"]) == ("uint16", 30)
    lo, hi = cloud.bounds()
    assert position["quantization"]["min"] == lo.tolist()
    # float32((max - min) / 65535), rounded up: exact, or the next float32 above it.
    exact = (hi.astype(np.float64) - lo) / QUANTIZATION_LEVELS
    step = np.array(position["quantization"]["step"], np.float32)
    assert (step >= exact).all()
    assert (np.nextafter(step, np.float32(0)) < exact).all()
    assert [a["offset"] for a in header["attributes"]] == [0, 30, 45]


def test_decode_returns_views_of_the_buffer(make_cloud) -> None:
    buffer = bytearray(encode(make_cloud(3), mode="planar", cloud_id="v"))
    cloud = decode(buffer)
    assert np.shares_memory(cloud.positions, np.frombuffer(buffer, np.uint8))
    assert not decode(bytes(buffer)).positions.flags.writeable
    assert decode(memoryview(buffer)).count == 3


def test_numpy_metadata_values_are_converted(make_cloud) -> None:
    metadata = {"focal": np.float32(512.5), "size": np.array([640, 480]), "n": np.int64(3)}
    header = decode(encode(make_cloud(2), mode="planar", cloud_id="m", metadata=metadata)).header
    assert header["metadata"] == {"focal": 512.5, "size": [640, 480], "n": 3}


# --- encoder input checks -------------------------------------------------------------------


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_encode_rejects_non_finite_positions(make_cloud, bad: float) -> None:
    cloud = make_cloud(4)
    positions = cloud.positions.copy()
    positions[2, 1] = bad
    with pytest.raises(ValueError, match="positions must all be finite"):
        encode(PointCloud(positions, cloud.colors, cloud.segments), mode="planar", cloud_id="x")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mode": ""}, "mode must be a non-empty string"),
        ({"cloud_id": 7}, "cloud_id must be a string"),
        ({"metadata": [1]}, "metadata must be a dict"),
        ({"metadata": {"t": float("nan")}}, "metadata is not JSON-serialisable"),
        ({"metadata": {"t": object()}}, "metadata is not JSON-serialisable"),
    ],
)
def test_encode_rejects_bad_labels(make_cloud, kwargs: dict, message: str) -> None:
    arguments = {"mode": "planar", "cloud_id": "x", **kwargs}
    with pytest.raises(ValueError, match=message):
        encode(make_cloud(2), **arguments)


def test_encode_rejects_segments_out_of_range(make_cloud) -> None:
    cloud = make_cloud(3)
    segments = cloud.segments.copy()
    segments[1] = 6
    with pytest.raises(ValueError, match="segment value 6 is out of range for 6 categories"):
        encode(PointCloud(cloud.positions, cloud.colors, segments), mode="planar", cloud_id="x")


@pytest.mark.parametrize(
    ("positions", "colors", "segments", "message"),
    [
        (
            np.zeros((2, 3), np.float64),
            np.zeros((2, 3), np.uint8),
            np.zeros(2, np.uint8),
            r"positions must be float32 with shape \(N, 3\), got float64",
        ),
        (
            np.zeros((2, 3), np.float32),
            np.zeros((3, 3), np.uint8),
            np.zeros(2, np.uint8),
            "colors has 3 rows but positions has 2",
        ),
        (
            np.zeros((2, 3), np.float32),
            np.zeros((2, 3), np.uint8),
            np.zeros((2, 1), np.uint8),
            r"segments must be uint8 with shape \(N,\)",
        ),
        (
            [[0, 0, 0]],
            np.zeros((1, 3), np.uint8),
            np.zeros(1, np.uint8),
            "positions must be a numpy array",
        ),
    ],
)
def test_point_cloud_checks_its_arrays(positions, colors, segments, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PointCloud(positions, colors, segments)


# --- decoder: malformed input ---------------------------------------------------------------


def test_every_malformed_case_raises_its_own_message(malformed) -> None:
    for name, case in malformed.items():
        with pytest.raises(ValueError) as raised:
            decode(case.buffer)
        message = str(raised.value)
        if case.prefix_only:
            assert message.startswith(case.message), (name, message)
        else:
            assert message == case.message, (name, message)


def test_every_truncation_is_rejected(make_cloud) -> None:
    for quantized in (False, True):
        buffer = encode(make_cloud(3), mode="planar", cloud_id="t", quantized=quantized)
        for end in range(len(buffer)):
            with pytest.raises(ValueError):
                decode(buffer[:end])


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_corrupted_buffers_decode_or_raise_value_error(data: st.DataObject) -> None:
    """Fuzz: flipping bytes anywhere gives either a valid cloud or a ValueError, never another
    exception (a KeyError or TypeError would be a check the decoder forgot)."""
    buffer = bytearray(
        encode(
            PointCloud(
                np.arange(12, dtype=np.float32).reshape(4, 3),
                np.arange(12, dtype=np.uint8).reshape(4, 3),
                np.arange(4, dtype=np.uint8),
            ),
            mode="planar",
            cloud_id="fuzz",
            quantized=data.draw(st.booleans()),
        )
    )
    for _ in range(data.draw(st.integers(1, 4))):
        index = data.draw(st.integers(0, len(buffer) - 1))
        buffer[index] = data.draw(st.integers(0, 255))
    try:
        decode(bytes(buffer))
    except ValueError:
        pass


def test_integral_json_floats_count_as_integers(make_cloud) -> None:
    """JSON has one number type: 48.0 is 48 (JavaScript cannot tell them apart either)."""
    buffer = encode(make_cloud(4), mode="planar", cloud_id="f")
    (length,) = struct.unpack_from("<I", buffer, 8)
    header = json.loads(buffer[12 : 12 + length])
    header["count"] = 4.0
    for attribute in header["attributes"]:
        for key in ("components", "offset", "length"):
            attribute[key] = float(attribute[key])
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 4)
    rebuilt = buffer[:8] + struct.pack("<I", len(raw)) + raw + buffer[12 + length :]
    assert np.array_equal(decode(rebuilt).positions, decode(buffer).positions)


def test_decode_rejects_non_contiguous_memory() -> None:
    strided = memoryview(np.zeros(64, np.uint8))[::2]
    with pytest.raises(ValueError, match="buffer must be contiguous bytes"):
        decode(strided)

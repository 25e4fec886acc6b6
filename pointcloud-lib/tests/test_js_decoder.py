"""The browser decoder (js/pcld.js) under node, on buffers made by Python: the same values bit for
bit, views rather than copies, and the same error message for every malformed buffer."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from pointcloud import PointCloud, decode, encode, js_decoder_path, pack_equirect

NODE = shutil.which("node")
HARNESS = Path(__file__).parent / "js" / "decode_cases.mjs"

pytestmark = pytest.mark.skipif(
    NODE is None, reason="node is not installed: THE JAVASCRIPT DECODER IS NOT TESTED"
)


def valid_buffers(make_cloud) -> dict[str, tuple[bytes, int]]:
    """name -> (buffer, byte offset to hand it to the decoder at)."""
    rng = np.random.default_rng(5)
    depth = rng.uniform(0.1, 1, (16, 32)).astype(np.float32)
    rgb = rng.integers(0, 256, (16, 32, 3), dtype=np.uint8)
    metadata = {"timing_ms": {"depth": 12.5}}
    float_buffer = encode(make_cloud(1000, seed=4), mode="planar", cloud_id="f", metadata=metadata)
    quantized = encode(make_cloud(1000, seed=4), mode="planar", cloud_id="q", quantized=True)
    empty = PointCloud(
        np.zeros((0, 3), np.float32), np.zeros((0, 3), np.uint8), np.zeros(0, np.uint8)
    )
    return {
        "float": (float_buffer, 0),
        "quantized": (quantized, 0),
        "empty": (encode(empty, mode="planar", cloud_id="e"), 0),
        "packed panorama": (bytes(pack_equirect(depth, rgb, cloud_id="p")), 0),
        "packed, quantized": (bytes(pack_equirect(depth, rgb, cloud_id="p", quantized=True)), 0),
        "float, unaligned": (float_buffer, 1),
        "quantized, unaligned": (quantized, 1),
    }


@pytest.fixture(scope="module")
def results(tmp_path_factory, make_cloud, malformed) -> dict:
    """Every valid and malformed case, decoded by one node process."""
    cases = valid_buffers(make_cloud)
    cases.update({name: (case.buffer, 0) for name, case in malformed.items()})
    return run_node(cases, tmp_path_factory.mktemp("pcld"))


def run_node(cases: dict[str, tuple[bytes, int]], folder: Path) -> dict:
    manifest = []
    for index, (name, (buffer, offset)) in enumerate(cases.items()):
        path = folder / f"case{index}.pcld"
        path.write_bytes(buffer)
        manifest.append({"name": name, "file": str(path), "offset": offset})
    (folder / "manifest.json").write_text(json.dumps(manifest))
    completed = subprocess.run(
        [NODE, str(HARNESS), str(js_decoder_path()), str(folder / "manifest.json")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    return json.loads(completed.stdout)


def test_valid_buffers_decode_to_python_values_bit_for_bit(results, make_cloud) -> None:
    for name, (buffer, _) in valid_buffers(make_cloud).items():
        expected = decode(buffer)
        got = results[name]
        assert "error" not in got, (name, got)
        assert got["count"] == expected.count
        assert got["header"] == expected.header
        assert got["types"] == ["Float32Array", "Uint8Array", "Uint8Array"]
        positions = base64.b64decode(got["positions"])
        # Quantised positions too: both decoders multiply and add in float32, in that order.
        assert positions == np.ascontiguousarray(expected.positions, "<f4").tobytes(), name
        assert base64.b64decode(got["colors"]) == expected.colors.tobytes()
        assert base64.b64decode(got["segments"]) == expected.segments.tobytes()


def test_arrays_are_views_of_the_buffer_where_alignment_allows(results) -> None:
    assert results["float"]["views"] == [True, True, True]
    assert results["packed panorama"]["views"] == [True, True, True]
    # Dequantised positions are a new array; colours and segments stay views.
    assert results["quantized"]["views"] == [False, True, True]
    # One byte off: float32 positions cannot be a view, so they are copied; the bytes still are.
    assert results["float, unaligned"]["views"] == [False, True, True]


def test_malformed_buffers_raise_the_python_message(results, malformed) -> None:
    for name, case in malformed.items():
        got = results[name]
        assert got.get("type") == "Error", (name, got)
        with pytest.raises(ValueError) as raised:
            decode(case.buffer)
        python = str(raised.value)
        if case.prefix_only:  # the JSON parsers' own wording differs
            assert got["error"].startswith(case.message) and python.startswith(case.message)
        else:
            assert got["error"] == python == case.message, name

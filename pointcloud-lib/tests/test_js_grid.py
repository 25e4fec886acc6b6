"""The grid variant in headless Chromium: js/pcld.js's decodePointCloudAsync, with the browser's
own image decoders, gives Python's points within the stated bound, loses none, and refuses every
malformed buffer with Python's message."""

from __future__ import annotations

import numpy as np
import pytest

from pointcloud import (
    decode,
    encode,
    js_decoder_path,
    pack_equirect,
    pack_grid,
    pack_planar,
    relative_error_bound,
)
from scene_dev import pcld_chromium as chromium

pytestmark = pytest.mark.skipif(
    chromium.chromium_missing() is not None,
    reason=f"THE GRID DECODER IS NOT TESTED IN A BROWSER: {chromium.chromium_missing()}",
)

PANORAMA = (1024, 2048)  # 2,097,152 points
CANVAS = "canvas path: "
PATHS = ["", CANVAS]  # the image decoders: ImageDecoder where the page has it, else a canvas


def valid_cases(make_grid_scene) -> dict[str, tuple[bytes, bytes]]:
    """name -> (grid buffer, the version 1 buffer of the same inputs)."""
    depth, rgb, categories = make_grid_scene()
    cases = {}
    for name, mode, kwargs in [
        ("planar", "planar", {"depth_is_metric": True, "focal_length_px": 25.0}),
        ("planar stride", "planar", {"near_m": 0.5, "far_m": 30.0, "stride": 3}),
        ("equirect", "equirect", {"depth_is_metric": True}),
        ("equirect thinned", "equirect", {"depth_is_metric": True, "max_points": 90}),
    ]:
        source = depth if kwargs.get("depth_is_metric") else np.clip(depth / 6, 0, 1)
        v1 = (pack_planar if mode == "planar" else pack_equirect)(
            source, rgb, categories, cloud_id=name, **kwargs
        )
        grid = pack_grid(source, rgb, categories, mode=mode, cloud_id=name, **kwargs)
        cases[name] = (grid, bytes(v1))
    webp = pack_grid(
        depth,
        rgb,
        categories,
        cloud_id="webp",
        depth_is_metric=True,
        color_codec="webp",
        geometry_codec="webp",
    )
    cases["webp images"] = (
        webp,
        bytes(pack_planar(depth, rgb, categories, cloud_id="webp", depth_is_metric=True)),
    )
    return cases


def big_panorama() -> tuple[bytes, int]:
    height, width = PANORAMA
    rows = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None]
    cols = np.linspace(0.0, 1.0, width, dtype=np.float32)[None, :]
    depth = (2.0 + np.sin(cols * 12 * np.pi) * np.cos(rows * 4 * np.pi)).astype(np.float32)
    rgb = np.empty((height, width, 3), np.uint8)
    rgb[..., 0] = (cols * 255).astype(np.uint8)
    rgb[..., 1] = (rows * 255).astype(np.uint8)
    rgb[..., 2] = 128
    categories = np.ascontiguousarray(
        np.broadcast_to((rows * 6).clip(0, 5).astype(np.uint8), (height, width))
    )
    grid = pack_grid(depth, rgb, categories, mode="equirect", cloud_id="2m", depth_is_metric=True)
    v1 = decode(pack_equirect(depth, rgb, categories, cloud_id="2m", depth_is_metric=True))
    return grid, v1.count


@pytest.fixture(scope="module")
def results(make_grid_scene, malformed_grid, make_cloud) -> dict:
    cases = {name: grid for name, (grid, _) in valid_cases(make_grid_scene).items()}
    cases.update({name: case.buffer for name, case in malformed_grid.items()})
    cases["v1 through the async path"] = encode(make_cloud(50), mode="planar", cloud_id="v")
    out = chromium.decode_in_chromium(js_decoder_path(), cases)
    # The same cases through the fallback (createImageBitmap -> canvas), as a browser without
    # WebCodecs' ImageDecoder decodes them.
    fallback = chromium.decode_in_chromium(js_decoder_path(), cases, image_decoder=False)
    out.update({f"{CANVAS}{name}": got for name, got in fallback.items()})
    grid, _ = big_panorama()
    out.update(chromium.decode_in_chromium(js_decoder_path(), {"2m": grid}, full=False))
    return out


@pytest.mark.parametrize("path", PATHS)
def test_chromium_agrees_with_python_within_the_bound(path, results, make_grid_scene) -> None:
    for name, (grid, v1_buffer) in valid_cases(make_grid_scene).items():
        got = results[path + name]
        assert "error" not in got, (name, got)
        python, v1 = decode(grid), decode(v1_buffer)
        assert got["count"] == python.count == v1.count, name  # nothing lost
        assert got["header"] == python.header
        assert got["types"] == ["Float32Array", "Uint8Array", "Uint8Array"]
        js = np.array(got["positions"], np.float64).reshape(-1, 3)
        depth = np.linalg.norm(v1.positions.astype(np.float64), axis=1)[:, None]
        near, far = python.header["depth"]["near"], python.header["depth"]["far"]
        bound = relative_error_bound(near, far)
        # JavaScript and Python run the same float32 expressions: only exp/sin/cos may differ,
        # by an ulp; both lie within the bound of the version 1 positions.
        assert (np.abs(js - python.positions) <= 2.0**-22 * depth).all(), name
        assert (np.abs(js - v1.positions) <= bound * depth * 1.01 + 1e-7).all(), name
        assert got["segments"] == python.segments.tolist() == v1.segments.tolist()
        # The browser's JPEG/WebP decoder may round differently from Pillow's, by a level or so.
        colour = np.abs(np.array(got["colors"]) - python.colors.reshape(-1)).max()
        assert colour <= 3, (name, colour)


def test_a_v1_buffer_decodes_through_the_async_path_too(results, make_cloud) -> None:
    got = results["v1 through the async path"]
    cloud = decode(encode(make_cloud(50), mode="planar", cloud_id="v"))
    assert np.array_equal(np.array(got["positions"], np.float32).reshape(-1, 3), cloud.positions)


def test_the_2m_point_panorama_loses_no_point_in_chromium(results) -> None:
    got = results["2m"]
    assert "error" not in got, got
    assert got["count"] == PANORAMA[0] * PANORAMA[1]
    print(
        f"\n2,097,152-point grid panorama decoded in Chromium in {got['ms'][0]:.0f} ms "
        "(the bench times it properly)"
    )


@pytest.mark.parametrize("path", PATHS)
def test_malformed_grid_buffers_raise_the_python_message_in_chromium(
    path, results, malformed_grid
) -> None:
    for name, case in malformed_grid.items():
        got = results[path + name]
        assert got.get("type") == "Error", (name, got)
        assert got["error"] == case.message, name

"""The grid variant (PCLD version 2): the same points as version 1 within the stated depth bound,
the camera in every header, and a clear message for every malformed buffer."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pointcloud import (
    decode,
    encode,
    pack_equirect,
    pack_grid,
    pack_grid_from_cloud,
    pack_planar,
    relative_error_bound,
)

CASES = [
    ("planar", {"depth_is_metric": True, "focal_length_px": 25.0}),
    (
        "planar",
        {
            "depth_is_metric": True,
            "focal_length_px": (25.0, 22.0),
            "principal_point": (8.0, 7.5),
            "stride": 3,
        },
    ),
    ("planar", {"near_m": 0.5, "far_m": 40.0, "fov_deg": 75.0}),
    ("equirect", {"depth_is_metric": True}),
    ("equirect", {"depth_is_metric": True, "max_points": 100}),
    ("equirect", {"near_m": 1.0, "far_m": 10.0, "stride": 2}),
]
PACK_V1 = {"planar": pack_planar, "equirect": pack_equirect}


def scene(make, kwargs: dict, holes: bool = True):
    depth, rgb, categories = make(holes=holes)
    if not kwargs.get("depth_is_metric"):
        # normalized (1 / depth), holes negative
        inverse = np.divide(1.0, depth, out=np.full_like(depth, -1.0), where=depth > 0)
        depth = inverse.astype(np.float32)
    return depth, rgb, categories


def depth_of(mode: str, positions: np.ndarray) -> np.ndarray:
    """What the depth map stored for each point: z along the axis, or the ray distance."""
    if mode == "planar":
        return -positions[:, 2].astype(np.float64)
    return np.linalg.norm(positions.astype(np.float64), axis=1)


@pytest.mark.parametrize("holes", [False, True])
@pytest.mark.parametrize(("mode", "kwargs"), CASES)
def test_grid_decodes_to_the_v1_points_within_the_bound(
    mode, kwargs, holes, make_grid_scene
) -> None:
    depth, rgb, categories = scene(make_grid_scene, kwargs, holes)
    v1 = decode(PACK_V1[mode](depth, rgb, categories, cloud_id="a", **kwargs))
    grid = decode(pack_grid(depth, rgb, categories, mode=mode, cloud_id="a", **kwargs))
    assert grid.count == v1.count  # nothing lost, nothing added
    true, got = depth_of(mode, v1.positions), depth_of(mode, grid.positions)
    near, far = grid.header["depth"]["near"], grid.header["depth"]["far"]
    assert np.abs(got / true - 1).max() <= relative_error_bound(near, far)
    # Every coordinate within the same relative bound of the point's depth.
    error = np.abs(grid.positions.astype(np.float64) - v1.positions).max(axis=1)
    assert (error <= relative_error_bound(near, far) * true * 1.01 + 1e-7).all()
    assert np.array_equal(grid.segments, v1.segments)
    # JPEG q95 4:4:4 of a smooth picture: close to the source.
    assert np.abs(grid.colors.astype(int) - v1.colors).mean() < 2.0
    assert grid.header["camera"] == v1.header["camera"]
    assert grid.header["mode"] == mode


@pytest.mark.parametrize("holes", [False, True])
@pytest.mark.parametrize(("mode", "kwargs"), CASES)
def test_bounds_are_those_of_the_decoded_positions(mode, kwargs, holes, make_grid_scene) -> None:
    # The writer derives them from per-column and per-row extremes, never writing the points.
    depth, rgb, categories = scene(make_grid_scene, kwargs, holes)
    cloud = decode(pack_grid(depth, rgb, categories, mode=mode, cloud_id="b", **kwargs))
    assert cloud.header["bounds"]["min"] == cloud.positions.min(axis=0).tolist()
    assert cloud.header["bounds"]["max"] == cloud.positions.max(axis=0).tolist()


def test_blocks_without_a_point_are_flattened_at_no_cost_to_any_point(make_grid_scene) -> None:
    # Noise everywhere, points only in the left half: the empty right half goes flat, which
    # shrinks the JPEG, and every point keeps the colour it has when nothing is flattened.
    depth, _, categories = make_grid_scene(height=48, width=64, holes=False)
    rgb = np.random.default_rng(3).integers(0, 256, (*depth.shape, 3), dtype=np.uint8)
    half = depth.copy()
    half[:, 32:] = 0.0
    sparse = pack_grid(half, rgb, categories, cloud_id="f", depth_is_metric=True)
    dense = pack_grid(depth, rgb, categories, cloud_id="f", depth_is_metric=True)
    got, full = decode(sparse), decode(dense)
    left = depth[:, :32] > 0
    assert np.array_equal(got.colors, full.colors.reshape(*depth.shape, 3)[:, :32][left])
    color_bytes = [decode(b).header["images"][0]["length"] for b in (sparse, dense)]
    assert color_bytes[0] < 0.75 * color_bytes[1]


def test_the_bound_is_below_a_thousandth_for_any_plausible_range() -> None:
    assert relative_error_bound(0.01, 1e4) < 1e-3 / 8
    assert relative_error_bound(1.0, 1.0) == 2.0**-22


@pytest.mark.parametrize("mode", ["planar", "equirect"])
def test_a_stored_v1_cloud_repacks_as_a_grid(mode, make_grid_scene) -> None:
    depth, rgb, categories = make_grid_scene()
    kwargs = {"depth_is_metric": True, "stride": 2}
    v1 = decode(PACK_V1[mode](depth, rgb, categories, cloud_id="s", metadata={"k": 1}, **kwargs))
    again = decode(pack_grid_from_cloud(v1, extra_header={"note": "x"}))
    assert again.count == v1.count
    assert again.header["metadata"] == {"k": 1} and again.header["note"] == "x"
    assert again.header["camera"] == v1.header["camera"]
    bound = relative_error_bound(again.header["depth"]["near"], again.header["depth"]["far"])
    ratio = depth_of(mode, again.positions) / depth_of(mode, v1.positions)
    assert np.abs(ratio - 1).max() <= bound + 1e-6
    assert np.array_equal(again.segments, v1.segments)
    assert again.header["bounds"]["min"] == again.positions.min(axis=0).tolist()
    assert again.header["bounds"]["max"] == again.positions.max(axis=0).tolist()


def test_repacking_needs_the_camera(make_cloud) -> None:
    with pytest.raises(ValueError, match="has no camera"):
        pack_grid_from_cloud(decode(encode(make_cloud(10), mode="planar", cloud_id="x")))


# --- the camera: a client re-projects the cloud onto its source image with it alone ----------


@pytest.mark.parametrize("variant", ["v1", "quantized", "grid"])
@pytest.mark.parametrize(("mode", "kwargs"), CASES)
def test_decoded_clouds_reproject_onto_their_pixels_within_half_a_pixel(
    variant, mode, kwargs, make_grid_scene
) -> None:
    depth, rgb, categories = scene(make_grid_scene, kwargs)
    if variant == "grid":
        buffer = pack_grid(depth, rgb, categories, mode=mode, cloud_id="r", **kwargs)
    else:
        buffer = PACK_V1[mode](
            depth, rgb, categories, cloud_id="r", quantized=variant == "quantized", **kwargs
        )
    cloud = decode(buffer)
    camera = cloud.header["camera"]
    # Which source pixels became points: v1's own selection (raster order), from v1 itself.
    reference = decode(PACK_V1[mode](depth, rgb, categories, cloud_id="r", **kwargs))
    stride = camera["stride"]
    rows, cols = np.mgrid[0 : depth.shape[0] : stride, 0 : depth.shape[1] : stride]
    keep = _kept(depth, kwargs)[::stride, ::stride]
    if kwargs.get("max_points"):
        keep = _thinned(keep, kwargs["max_points"])
    u_true, v_true = cols[keep].astype(float), rows[keep].astype(float)
    assert reference.count == u_true.size
    x, y, z = (cloud.positions[:, i].astype(np.float64) for i in range(3))
    if camera["model"] == "pinhole":
        u = x / -z * camera["fx"] + camera["cx"]
        v = camera["cy"] - y / -z * camera["fy"]
    else:
        width, height = camera["width"], camera["height"]
        u = (np.arctan2(x, -z) / (2 * math.pi) + 0.5) * width - 0.5
        u = np.where(u - u_true > width / 2, u - width, u)  # the seam
        v = (0.5 - np.arctan2(y, np.hypot(x, z)) / math.pi) * height - 0.5
    assert np.abs(u - u_true).max() <= 0.5 and np.abs(v - v_true).max() <= 0.5


def _kept(depth: np.ndarray, kwargs: dict) -> np.ndarray:
    if kwargs.get("depth_is_metric"):
        return depth > 0
    return depth >= 0


def _thinned(keep: np.ndarray, max_points: int) -> np.ndarray:
    available = int(np.count_nonzero(keep))
    if available <= max_points:
        return keep
    chosen = np.flatnonzero(keep)[(np.arange(max_points) * available) // max_points]
    out = np.zeros(keep.shape, bool)
    out.reshape(-1)[chosen] = True
    return out


def test_camera_fields_and_focal_source(make_grid_scene) -> None:
    depth, rgb, _categories = make_grid_scene()
    header = decode(pack_planar(depth, rgb, cloud_id="c", depth_is_metric=True)).header
    camera = header["camera"]
    assert camera["model"] == "pinhole" and camera["focal_source"] == "default_fov"
    assert (camera["width"], camera["height"], camera["stride"]) == (20, 12, 1)
    assert camera["depth_is_metric"] is True
    kept = depth[depth > 0]
    assert camera["depth_range_m"] == [float(kept.min()), float(kept.max())]
    given = decode(pack_planar(depth, rgb, cloud_id="c", fov_deg=50)).header["camera"]
    assert given["focal_source"] == "caller" and given["depth_range_m"] == [1.0, 10.0]
    model = decode(
        pack_grid(depth, rgb, cloud_id="c", focal_length_px=30.0, focal_source="model")
    ).header["camera"]
    assert model["focal_source"] == "model" and model["fx"] == 30.0
    panorama = decode(pack_equirect(depth, rgb, cloud_id="c")).header["camera"]
    assert panorama == {
        "model": "equirectangular",
        "width": 20,
        "height": 12,
        "stride": 1,
        "depth_is_metric": False,
        "depth_range_m": [1.0, 10.0],
    }
    with pytest.raises(ValueError, match="focal_source must be one of"):
        pack_planar(depth, rgb, cloud_id="c", focal_source="guess")


# --- extra_header (the agreement between branches) -------------------------------------------


@pytest.mark.parametrize("writer", ["encode", "pack_planar", "pack_equirect", "pack_grid"])
def test_extra_header_adds_keys_and_refuses_the_formats_own(
    writer, make_cloud, make_grid_scene
) -> None:
    depth, rgb, _ = make_grid_scene()

    def write(extra):
        if writer == "encode":
            return encode(make_cloud(5), mode="planar", cloud_id="e", extra_header=extra)
        if writer == "pack_grid":
            return pack_grid(depth, rgb, cloud_id="e", extra_header=extra)
        return {"pack_planar": pack_planar, "pack_equirect": pack_equirect}[writer](
            depth, rgb, cloud_id="e", extra_header=extra
        )

    header = decode(write({"descriptors": {"BASS_SUBJECT": [1, 2]}})).header
    assert header["descriptors"] == {"BASS_SUBJECT": [1, 2]}
    for key in ("camera", "count", "metadata", "images"):
        with pytest.raises(ValueError, match=f"extra_header key '{key}' is defined by the PCLD"):
            write({key: 1})


# --- bad input ---------------------------------------------------------------------------------


def test_malformed_grid_buffers_raise_their_message(malformed_grid) -> None:
    for name, case in malformed_grid.items():
        with pytest.raises(ValueError) as raised:
            decode(case.buffer)
        assert str(raised.value) == case.message, name


def test_pack_grid_checks_its_options(make_grid_scene) -> None:
    depth, rgb, _ = make_grid_scene()
    with pytest.raises(ValueError, match="mode must be 'planar' or 'equirect'"):
        pack_grid(depth, rgb, mode="cube", cloud_id="x")
    with pytest.raises(ValueError, match=r"color_quality must be an integer in 1\.\.100"):
        pack_grid(depth, rgb, cloud_id="x", color_quality=0)
    with pytest.raises(ValueError, match="color_codec must be one of jpeg, webp"):
        pack_grid(depth, rgb, cloud_id="x", color_codec="gif")
    with pytest.raises(ValueError, match="rgb shape"):
        pack_grid(depth, rgb[:, :-1], cloud_id="x")


@pytest.mark.parametrize(("color_codec", "geometry_codec"), [("webp", "webp"), ("jpeg", "png")])
def test_every_codec_pair_round_trips(color_codec, geometry_codec, make_grid_scene) -> None:
    depth, rgb, categories = make_grid_scene()
    buffer = pack_grid(
        depth,
        rgb,
        categories,
        cloud_id="w",
        depth_is_metric=True,
        color_codec=color_codec,
        geometry_codec=geometry_codec,
    )
    cloud = decode(buffer)
    assert cloud.count == int(np.count_nonzero(depth > 0))
    assert [i["codec"] for i in cloud.header["images"]] == [color_codec, geometry_codec]


def test_an_empty_grid_round_trips(make_grid_scene) -> None:
    depth, rgb, _ = make_grid_scene()
    cloud = decode(pack_grid(np.zeros_like(depth), rgb, cloud_id="z", depth_is_metric=True))
    assert cloud.count == 0
    assert cloud.header["bounds"] == {"min": [0.0, 0.0, 0.0], "max": [0.0, 0.0, 0.0]}

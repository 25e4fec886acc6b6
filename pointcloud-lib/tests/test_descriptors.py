"""Audio descriptors: equal to a brute-force per-category computation, on small random clouds
(hypothesis), on long clouds whose runs cross block boundaries, and on noise (the sorted path);
and they travel in the PCLD header through ``extra_header``."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pointcloud import CATEGORY_NAMES, PointCloud, decode, encode, pack_planar
from pointcloud.descriptors import DECIMALS, describe, distances

LABELS = [
    {"label": "person", "ade20k_id": 12, "category": 0, "pixel_fraction": 0.2},
    {"label": "dog", "ade20k_id": 126, "category": 0, "pixel_fraction": 0.05},
    {"label": "sky", "ade20k_id": 2, "category": 2, "pixel_fraction": 0.5},
    {"label": "tree", "ade20k_id": 4, "category": 1, "pixel_fraction": 0.25},
]


def brute_force(cloud: PointCloud) -> list[dict]:
    """One mask per category, numpy's own float64 reductions."""
    result = []
    positions = cloud.positions.astype(np.float64)
    distance = distances(cloud.positions).astype(np.float64)
    for index in range(len(CATEGORY_NAMES)):
        mask = cloud.segments == index
        if not mask.any():
            result.append(None)
            continue
        result.append({
            "count": int(mask.sum()),
            "share": mask.sum() / cloud.count,
            "centroid": positions[mask].mean(axis=0),
            "min": positions[mask].min(axis=0),
            "max": positions[mask].max(axis=0),
            "distance": [distance[mask].mean(), distance[mask].min(), distance[mask].max()],
            "mean_color": cloud.colors[mask].astype(np.float64).mean(axis=0),
        })
    return result


def assert_matches(cloud: PointCloud) -> None:
    described = describe(cloud)
    assert described["count"] == cloud.count
    expected = brute_force(cloud)
    # Rounding to DECIMALS, plus float32 sums over at most one block of points.
    tolerance = {"rtol": 1e-5, "atol": 10.0 ** -DECIMALS}
    for entry, truth in zip(described["categories"], expected, strict=True):
        if truth is None:
            assert entry["count"] == 0 and entry["share"] == 0.0
            assert entry["centroid"] is entry["distance"] is entry["mean_color"] is None
            continue
        assert entry["count"] == truth["count"]
        np.testing.assert_allclose(entry["share"], truth["share"], **tolerance)
        for key in ("centroid", "min", "max", "mean_color"):
            np.testing.assert_allclose(entry[key], truth[key], **tolerance, err_msg=key)
        distance = entry["distance"]
        np.testing.assert_allclose(
            [distance["mean"], distance["min"], distance["max"]], truth["distance"], **tolerance
        )


def cloud_from(segments: np.ndarray, seed: int, spread: float = 10.0) -> PointCloud:
    rng = np.random.default_rng(seed)
    count = segments.size
    return PointCloud(
        rng.normal(0, spread, (count, 3)).astype(np.float32),
        rng.integers(0, 256, (count, 3), dtype=np.uint8),
        segments.astype(np.uint8),
    )


def test_small_clouds_match_brute_force() -> None:
    @settings(max_examples=60, deadline=None)
    @given(
        segments=st.lists(st.integers(0, 5), min_size=0, max_size=60),
        seed=st.integers(0, 2**16),
    )
    def check(segments: list[int], seed: int) -> None:
        assert_matches(cloud_from(np.array(segments, dtype=np.uint8), seed))

    check()


@pytest.mark.parametrize("run_length", [1, 7, 5000, 40_000])
def test_runs_across_blocks_match_brute_force(run_length: int) -> None:
    # Long runs (the raster-order case) straddle the 32768-point blocks; run
    # length 1 is noise (sorted by category first).
    rng = np.random.default_rng(run_length)
    runs = rng.integers(0, 6, 100_000 // run_length + 1)
    segments = np.repeat(runs, run_length)[:100_003 - run_length % 3]
    assert_matches(cloud_from(segments, seed=run_length))


def test_far_off_centre_cloud_matches_brute_force() -> None:
    # Coordinates far from zero with a small spread: float rounding in the sums shows here first.
    segments = np.repeat(np.arange(6), 40_000)
    cloud = cloud_from(segments, seed=6, spread=0.01)
    cloud = PointCloud(cloud.positions + np.float32(500), cloud.colors, cloud.segments)
    assert_matches(cloud)


def test_non_finite_coordinates_match_brute_force() -> None:
    # Not produced by the projections (they drop invalid depth), but a PointCloud may hold them:
    # NaN spreads to its category's sums and extremes, infinities stay extremes.
    segments = np.repeat(np.arange(6), 500)
    cloud = cloud_from(segments, seed=8)
    cloud.positions[10, 1] = np.nan
    cloud.positions[700, 0] = np.inf
    cloud.positions[1200, 2] = -np.inf
    cloud.positions[1300, 2] = np.nan
    with np.errstate(invalid="ignore"):
        assert_matches(cloud)


def test_empty_cloud_has_six_empty_categories(empty_cloud: PointCloud) -> None:
    described = describe(empty_cloud, LABELS)
    assert described["count"] == 0
    assert [e["name"] for e in described["categories"]] == list(CATEGORY_NAMES)
    assert all(e["count"] == 0 and e["centroid"] is None for e in described["categories"])


def test_labels_are_listed_per_category_largest_first() -> None:
    cloud = cloud_from(np.zeros(10, np.uint8), seed=1)
    entries = describe(cloud, LABELS, top_labels=5)["categories"]
    subject = entries[0]
    assert [label["label"] for label in subject["labels"]] == ["person", "dog"]
    assert subject["pixel_share"] == pytest.approx(0.25)
    assert [label["share"] for label in subject["labels"]] == pytest.approx([0.8, 0.2])
    assert entries[2]["labels"][0] == {"label": "sky", "ade20k_id": 2, "pixel_fraction": 0.5,
                                       "share": 1.0}
    assert entries[5]["labels"] == [] and entries[5]["pixel_share"] == 0.0
    assert describe(cloud, LABELS, top_labels=1)["categories"][0]["labels"][0]["label"] == "person"
    # No labels given: nothing is claimed about pixels.
    assert describe(cloud)["categories"][0]["pixel_share"] is None


def test_descriptors_are_plain_json() -> None:
    described = describe(cloud_from(np.arange(300) % 6, seed=2), LABELS)
    assert json.loads(json.dumps(described, allow_nan=False)) == described


def test_descriptors_travel_in_the_header_of_every_variant() -> None:
    cloud = cloud_from(np.arange(300) % 6, seed=3)
    extra = {"descriptors": describe(cloud, LABELS)}
    for quantized in (False, True):
        header = decode(encode(cloud, mode="planar", cloud_id="d", quantized=quantized,
                               extra_header=extra)).header
        assert header["descriptors"] == extra["descriptors"]
    depth = np.full((4, 6), 2.0, np.float32)
    rgb = np.zeros((4, 6, 3), np.uint8)
    for quantized in (False, True):
        packed = pack_planar(depth, rgb, depth_is_metric=True, cloud_id="p", quantized=quantized,
                             extra_header=extra)
        assert decode(packed).header["descriptors"] == extra["descriptors"]


def test_extra_header_may_not_redefine_format_keys() -> None:
    cloud = cloud_from(np.zeros(3, np.uint8), seed=4)
    with pytest.raises(ValueError, match="'count' is defined by the PCLD format"):
        encode(cloud, mode="planar", cloud_id="x", extra_header={"count": 1})


def test_segment_values_beyond_the_categories_are_refused() -> None:
    with pytest.raises(ValueError, match="segment value 6 is out of range"):
        describe(cloud_from(np.array([0, 6, 1], np.uint8), seed=5))
    segments = np.repeat(np.array([0, 1, 200, 2], np.uint8), 50_000)
    with pytest.raises(ValueError, match="segment value 200 is out of range"):
        describe(cloud_from(segments, seed=5))


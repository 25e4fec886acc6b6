"""The registry of output formats: what /generate negotiates, what each download of
/generations/{id}/ resolves to, and the tables the store and the metrics derive from it."""

from __future__ import annotations

import pytest

from orchestrator import formats
from orchestrator.enums import OutputFormat
from orchestrator.storage import ASSETS, STORED_ASSETS


def test_every_output_format_has_one_entry_and_the_lists_follow_the_table():
    assert set(formats.FORMATS) == set(OutputFormat)
    assert formats.GENERATE_FORMATS == ("float", "quantized", "grid", "glb")
    assert ASSETS == (*STORED_ASSETS, "pointcloud.ply", "scene.glb", "scene.splat",
                      "scene.spz", "gaussians.ply")
    # A mesh is kept beside the points of the same format.
    assert set(formats.CACHED_FILES) == {"pointcloud.grid.bin", "scene.glb", "scene.mesh.glb",
                                         "scene.splat", "scene.spz", "gaussians.ply"}
    assert formats.ASSET_QUERY_VALUES == ("float", "quantized", "grid")


@pytest.mark.parametrize(("query", "accept", "chosen"), [
    (None, None, "float"),
    (None, "*/*", "float"),
    ("quantized", "model/gltf-binary", "quantized"),  # the query wins
    (None, "application/x-pcld-quantized", "quantized"),
    (None, "application/x-pcld-grid, */*;q=0.1", "grid"),
    (None, "model/gltf-binary", "glb"),
])
def test_generate_negotiates_by_query_then_accept(query, accept, chosen):
    assert formats.negotiate(query, accept) == chosen


@pytest.mark.parametrize(("asset", "query", "chosen", "option"), [
    ("pointcloud.bin", None, "float", None),
    ("pointcloud.bin", "quantized", "quantized", None),
    ("pointcloud.bin", "grid", "grid", None),
    ("scene.glb", None, "glb", None),
    ("scene.glb", "quantized", "glb", "quantized"),
    ("scene.glb", "grid", "glb", None),  # not one of its options: ignored, as before
    ("pointcloud.ply", "float", "ply", None),
    ("gaussians.ply", None, "gaussian_ply", None),
])
def test_a_download_resolves_to_a_format_and_its_option(asset, query, chosen, option):
    found, given = formats.for_asset(asset, query)
    assert (found.name, given) == (chosen, option)


def test_stored_maps_are_not_formats_and_downloads_are_labelled_from_the_table():
    assert formats.for_asset("depth.png", None) is None
    assert [formats.download_metric(a) for a in ASSETS] == [
        "png", "png", "png", "pcld", "ply", "glb", "splat", "spz", "gaussian_ply"]
    assert formats.download_metric("nonsense") == "other"

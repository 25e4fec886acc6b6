"""/generate and /jobs: the `edges` field (flying-pixel clean-up) and the focal length's source
(EXIF, the model, the default field of view) recorded in metadata.json."""

from __future__ import annotations

import io
import math

import pytest
from PIL import ExifTags, Image

from pointcloud import DEFAULT_EDGE_RTOL, decode


def exif_jpeg(width: int, height: int, focal_35mm: float | None) -> bytes:
    exif = Image.Exif()
    if focal_35mm is not None:
        exif.get_ifd(ExifTags.IFD.Exif)[ExifTags.Base.FocalLengthIn35mmFilm] = focal_35mm
    buffer = io.BytesIO()
    # Two flat halves at different brightness: the fake depth model gives them different depths.
    image = Image.new("RGB", (width, height), (30, 30, 30))
    image.paste((230, 230, 230), (width // 2, 0, width, height))
    image.save(buffer, format="JPEG", exif=exif, quality=95)
    return buffer.getvalue()


async def upload_jpeg(api, data: bytes, **fields):
    return await api.client.post("/generate", files={"image": ("p.jpg", data, "image/jpeg")},
                                 data=fields)


@pytest.mark.parametrize(("edges", "rtol"), [
    (None, DEFAULT_EDGE_RTOL), ("keep", None), ("drop", DEFAULT_EDGE_RTOL), (0.05, 0.05)])
async def test_edges_json(api, edges, rtol):
    fields = {} if edges is None else {"edges": edges}
    response = await api.generate(**fields)
    assert response.status_code == 200, response.text
    record = api.record(response.headers["x-generation-id"])
    assert record["edges"]["rtol"] == rtol
    width, height = record["image"]["width"], record["image"]["height"]
    assert record["point_count"] + record["edges"]["dropped"] == width * height
    assert len(decode(response.content)) == record["point_count"]
    if edges == "keep":
        assert record["edges"]["dropped"] == 0


async def test_edges_multipart_drops_the_blend_between_two_depths(api):
    data = exif_jpeg(120, 90, None)
    kept = api.record((await upload_jpeg(api, data, edges="keep")).headers["x-generation-id"])
    dropped = api.record((await upload_jpeg(api, data, edges="0.02")).headers["x-generation-id"])
    assert kept["edges"] == {"rtol": None, "dropped": 0}
    assert dropped["edges"]["rtol"] == 0.02 and dropped["edges"]["dropped"] > 0
    assert dropped["point_count"] == kept["point_count"] - dropped["edges"]["dropped"]


async def test_the_setting_turns_it_off_and_drop_turns_it_back_on(make_api):
    async with make_api(edge_rtol=0) as api:
        off = api.record((await api.generate()).headers["x-generation-id"])
        assert off["edges"] == {"rtol": None, "dropped": 0}
        on = api.record((await api.generate(edges="drop")).headers["x-generation-id"])
        assert on["edges"]["rtol"] == DEFAULT_EDGE_RTOL


@pytest.mark.parametrize("edges", [0, -0.1, 11, "sometimes", True, [0.1]])
async def test_out_of_range_edges_are_422(api, edges):
    response = await api.generate(edges=edges)
    assert response.status_code == 422, response.text
    assert any(e["loc"][:2] == ["body", "edges"] for e in response.json()["detail"])
    multipart = await api.upload("/jobs", api.png(), edges=str(edges))
    assert multipart.status_code == 422, multipart.text
    assert api.fakes.depth.calls == []


async def test_exif_focal_length_is_used_and_recorded(api):
    response = await upload_jpeg(api, exif_jpeg(160, 120, 28))
    assert response.status_code == 200, response.text
    record = api.record(response.headers["x-generation-id"])
    assert record["focal_source"] == "exif"
    assert record["focal_length_px"] == pytest.approx(28 * 200 / math.hypot(36, 24))


async def test_exif_wins_over_the_model_and_rescales_its_metric_depth(api):
    api.fakes.depth.behaviour.metric = True
    plain = await upload_jpeg(api, exif_jpeg(160, 120, None))
    with_exif = await upload_jpeg(api, exif_jpeg(160, 120, 28))
    a = api.record(plain.headers["x-generation-id"])
    b = api.record(with_exif.headers["x-generation-id"])
    assert a["focal_source"] == "model" and b["focal_source"] == "exif"
    ratio = b["focal_length_px"] / a["focal_length_px"]
    # Apple's convention: metric depth is proportional to the focal length it was computed with.
    za = -decode(plain.content).positions[:, 2]
    zb = -decode(with_exif.content).positions[:, 2]
    assert float(zb.max()) == pytest.approx(float(za.max()) * ratio, rel=1e-4)


@pytest.mark.parametrize("focal", [None, 0, 1])
async def test_unusable_exif_falls_back_silently(api, focal):
    response = await upload_jpeg(api, exif_jpeg(160, 120, focal))
    assert response.status_code == 200, response.text
    record = api.record(response.headers["x-generation-id"])
    assert record["focal_source"] == "default_fov" and record["fov_deg"] == 60.0

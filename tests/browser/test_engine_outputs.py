"""The engine-ready files in Chromium: scene.glb through the viewer's vendored three.js
GLTFLoader (a bare page, and the viewer itself: its PCLD / GLB switch), and scene.splat through a
web Gaussian splat renderer from npm (@mkkellogg/gaussian-splats-3d), with screenshots and pixel
statistics.

No stack here: the files are made by the same functions the routes call, from a synthetic scene,
and served with the pages from a temporary folder; for the viewer, a small stand-in for the
orchestrator serves its static files, the JS decoder and the few API paths it reads for one
generation. Screenshots go to test-artifacts/browser/.
"""

from __future__ import annotations

import io
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import pointcloud
from pointcloud import decode, encode, pack_planar, project_planar
from pointcloud.descriptors import describe
from pointcloud.glb import quantized_error_bound, to_glb
from pointcloud.splat import to_gaussian_ply, to_splat
from scene_dev.pcld_chromium import serve_folder
from tests.browser.browser import (
    BrowserSession,
    opened_page,
    orchestrator_stand_in,
    viewer_screenshot,
    viewer_shown,
    wait_shown,
)
from tests.node import JS_DIR, js_packages_or_skip

pytestmark = [pytest.mark.browser]

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "browser"
STATIC = ROOT / "orchestrator" / "src" / "orchestrator" / "static"
VENDOR = STATIC / "vendor"
PAGES = Path(__file__).parent / "pages"
WIDTH, HEIGHT, FOV_DEG = 160, 120, 60.0


def synthetic_cloud():
    """A wall 4 m away, red on the left half and blue on the right, a green box 2.5 m away in the
    middle; categories by colour."""
    depth = np.full((HEIGHT, WIDTH), 4.0, np.float32)
    rgb = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    rgb[:, : WIDTH // 2] = (220, 40, 40)
    rgb[:, WIDTH // 2 :] = (40, 60, 220)
    categories = np.full((HEIGHT, WIDTH), 5, np.uint8)
    box = (slice(40, 80), slice(60, 100))
    depth[box], rgb[box], categories[box] = 2.5, (40, 200, 60), 4
    options = {"depth_is_metric": True, "fov_deg": FOV_DEG}
    extra = {"descriptors": describe(project_planar(depth, rgb, categories, **options))}
    # With its camera in the header, as the orchestrator stores it (the viewer opens with its
    # field of view).
    return decode(pack_planar(depth, rgb, categories, cloud_id="synthetic", extra_header=extra,
                              **options))


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, object]]:
    """A loopback server of the test pages, the viewer's vendored three.js, tests/js's
    node_modules and the scene's files."""
    js_packages_or_skip("three", "@mkkellogg/gaussian-splats-3d")
    folder = tmp_path_factory.mktemp("engine-site")
    for page in PAGES.iterdir():
        shutil.copy(page, folder / page.name)
    (folder / "vendor").symlink_to(VENDOR)
    (folder / "node_modules").symlink_to(JS_DIR / "node_modules")
    cloud = synthetic_cloud()
    (folder / "scene.glb").write_bytes(to_glb(cloud))  # quantised: the scene is 8 m across
    (folder / "scene-float.glb").write_bytes(to_glb(cloud, positions="float"))
    (folder / "scene.mesh.glb").write_bytes(to_glb(cloud, geometry="mesh"))
    focal = WIDTH / 2 / np.tan(np.radians(FOV_DEG / 2))
    (folder / "scene.splat").write_bytes(to_splat(cloud, angular_step=1 / focal))
    (folder / "gaussians.ply").write_bytes(to_gaussian_ply(cloud, angular_step=1 / focal))
    with serve_folder(folder) as url:
        yield url.rstrip("/"), cloud


def opened(browser: BrowserSession, url: str):
    """A test page, once it has set ``data-done`` on its body."""
    return opened_page(browser, url, viewport={"width": 640, "height": 480},
                       ready="body[data-done=true]", timeout_ms=60_000)


@pytest.mark.parametrize("file", ["scene.glb", "scene-float.glb"])
def test_gltfloader_reads_the_glb(browser: BrowserSession, site, file: str) -> None:
    url, cloud = site
    with opened(browser, f"{url}/glb.html?file={file}") as page:
        result = page.evaluate("window.result")
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        name = file.removesuffix(".glb").replace("scene", "glb")
        pixels = np.asarray(Image.open(io.BytesIO(page.locator("canvas").screenshot(
            path=str(ARTIFACTS / f"engine-{name}-gltfloader.png")))).convert("RGB"))
    assert result["points"] == 1
    assert result["attributes"] == ["_segment", "color", "position"]
    positions = np.array(result["positions"])
    if file == "scene.glb":
        # KHR_mesh_quantization: uint16 levels, the node's scale and offset put them back.
        assert result["extensionsRequired"] == ["KHR_mesh_quantization"]
        assert result["positionType"] == "Uint16Array"
        bound = quantized_error_bound(*cloud.bounds())
        assert np.abs(positions - cloud.positions).max() <= bound
    else:
        assert result["extensionsRequired"] == []
        np.testing.assert_array_equal(positions.astype(np.float32), cloud.positions)
    np.testing.assert_array_equal(np.array(result["colors"]), cloud.colors)
    np.testing.assert_array_equal(np.array(result["segments"]), cloud.segments)
    assert result["userData"]["descriptors"] == cloud.header["descriptors"]
    assert (pixels.max(axis=-1) > 30).mean() > 0.2, "three.js drew nothing of the GLB"


def test_gltfloader_draws_the_mesh_as_a_surface(browser: BrowserSession, site) -> None:
    """scene.glb?geometry=mesh: one TRIANGLES mesh with its normals, drawn from the camera's
    place it fills the picture with the photo's colours (a surface, not points with gaps)."""
    url, cloud = site
    with opened(browser, f"{url}/mesh.html") as page:
        result = page.evaluate("window.result")
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        pixels = np.asarray(Image.open(io.BytesIO(page.locator("canvas").screenshot(
            path=str(ARTIFACTS / "engine-mesh-gltfloader.png")))).convert("RGB")).astype(int)
    mesh = pointcloud.mesh_from_cloud(cloud)
    assert result["meshes"] == 1 and result["material"] == "MeshBasicMaterial"  # unlit
    assert result["attributes"] == ["_segment", "color", "normal", "position"]
    assert (result["vertices"], result["triangles"]) == (mesh.vertex_count, mesh.triangle_count)
    height, width, _ = pixels.shape
    # The wall fills the frame: no gaps between points, only the thin cut around the box.
    drawn = pixels.max(axis=-1) > 30
    assert drawn.mean() > 0.9, f"only {drawn.mean():.0%} of the picture is drawn"
    red, green, blue = (pixels[..., k] for k in range(3))
    left = (red > 150) & (blue < 100)
    right = (blue > 150) & (red < 100)
    box = (green > 150) & (red < 100)
    assert left[:, : width // 4].mean() > 0.9 and right[:, 3 * width // 4 :].mean() > 0.9
    middle = box[height // 3 : 2 * height // 3, 2 * width // 5 : 3 * width // 5]
    assert middle.mean() > 0.9


@pytest.mark.parametrize("query", ["file=scene.splat&format=Splat",
                                   "file=gaussians.ply&format=Ply"])
def test_splat_renderer_draws_the_splats(browser: BrowserSession, site, query: str) -> None:
    url, cloud = site
    with opened(browser, f"{url}/splat.html?{query}") as page:
        result = page.evaluate("window.result")
        assert "error" not in result, result["error"]
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        name = query.split("&")[0].removeprefix("file=").replace(".", "-")
        png = page.screenshot(path=str(ARTIFACTS / f"engine-{name}-gaussian-splats-3d.png"))
    assert result["splats"] == len(cloud)
    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(np.int16)
    covered = pixels.max(axis=-1) > 30
    assert covered.mean() > 0.5, f"the splats cover {covered.mean():.0%} of the view"
    # The picture is the scene, not a smear: red wall on the left, blue on the right, the
    # green box in the middle (the camera looks down -Z from the viewer's place).
    height, width = covered.shape
    left = pixels[height // 8 : -height // 8, : width // 8].reshape(-1, 3).mean(axis=0)
    right = pixels[height // 8 : -height // 8, -width // 8 :].reshape(-1, 3).mean(axis=0)
    middle = pixels[height // 2 - 10 : height // 2 + 10, width // 2 - 10 : width // 2 + 10]
    middle = middle.reshape(-1, 3).mean(axis=0)
    assert left[0] > 2 * left[2] and right[2] > 2 * right[0], (left, right)
    assert middle[1] > 1.5 * max(middle[0], middle[2]), middle


GENERATION = "5" * 32


@pytest.fixture(scope="module")
def viewer_site() -> Iterator[tuple[str, object]]:
    js_packages_or_skip("three")
    cloud = synthetic_cloud()
    record = {"id": GENERATION, "status": "completed", "prompt": "a wall and a box",
              "mode": "standard", "created_at": "2026-01-01T00:00:00Z",
              "point_count": cloud.count}
    png = io.BytesIO()
    Image.new("RGB", (8, 6), (200, 60, 60)).save(png, format="PNG")
    base = f"/generations/{GENERATION}"
    stored = encode(cloud, mode="planar", cloud_id=GENERATION, camera=cloud.header["camera"],
                    extra_header={"descriptors": cloud.header["descriptors"]})
    files = {
        "/lib/pcld.js": (pointcloud.js_decoder_path().read_bytes(), "text/javascript"),
        # The viewer asks what the server offers beyond points; this one lists nothing more.
        "/limits": (b"{}", "application/json"),
        "/generations": (json.dumps({"items": [record], "total": 1, "limit": 12, "offset": 0})
                         .encode(), "application/json"),
        base: (json.dumps(record).encode(), "application/json"),
        f"{base}/pointcloud.bin": (bytes(stored), "application/octet-stream"),
        f"{base}/scene.glb": (to_glb(cloud), "model/gltf-binary"),
        f"{base}/image.png": (png.getvalue(), "image/png"),
    }
    with orchestrator_stand_in(files) as url:
        yield url, cloud


def test_the_viewer_opens_the_glb(browser: BrowserSession, viewer_site) -> None:
    url, cloud = viewer_site
    requested: list[str] = []
    with opened_page(browser, f"{url}#g={GENERATION}", viewport={"width": 1100, "height": 760},
                     ready=viewer_shown("pcld"), requested=requested) as page:
        assert page.is_enabled("input[name=source][value=glb]")
        from_pcld = viewer_screenshot(page, "engine-viewer-pcld.png")

        page.check("input[name=source][value=glb]")
        wait_shown(page, "glb")
        assert any(u.endswith(f"/generations/{GENERATION}/scene.glb") for u in requested)
        # Every script from this server: the vendored three.js, no CDN.
        assert all(u.startswith(url) or u.startswith("data:") for u in requested), requested
        assert int(page.get_attribute("#viewer", "data-point-count")) == cloud.count
        assert "KHR_mesh_quantization" in page.text_content("#stats")
        header = page.evaluate("sceneViewer.header")
        assert header["descriptors"] == cloud.header["descriptors"]
        lo, hi = cloud.bounds()
        bound = quantized_error_bound(lo, hi)
        np.testing.assert_allclose(header["bounds"]["min"], lo, atol=bound)
        np.testing.assert_allclose(header["bounds"]["max"], hi, atol=bound)
        # The legend comes from the GLB's extras: share and mean distance per category.
        stats = page.locator("#legend li .legend-stats").all_text_contents()
        wall = cloud.header["descriptors"]["categories"][5]
        assert f"{wall['distance']['mean']:.1f} m" in stats[5]

        from_glb = viewer_screenshot(page, "engine-viewer-glb.png")
        page.screenshot(path=str(ARTIFACTS / "engine-viewer-glb-page.png"))
        covered = from_glb.max(axis=-1) > 40
        assert covered.mean() > 0.5, f"the GLB covers {covered.mean():.0%} of the view"
        # The same picture as the PCLD cloud: the viewer frames both from the capture camera.
        assert np.abs(from_glb - from_pcld).max(axis=-1).mean() < 4
        height, width = covered.shape
        left = from_glb[height // 4 : -height // 4, width // 8 : width // 4].reshape(-1, 3)
        right = from_glb[height // 4 : -height // 4, -width // 4 : -width // 8].reshape(-1, 3)
        middle = from_glb[height // 2 - 8 : height // 2 + 8, width // 2 - 8 : width // 2 + 8]
        left, right = left.mean(axis=0), right.mean(axis=0)
        middle = middle.reshape(-1, 3).mean(axis=0)
        assert left[0] > 2 * left[2] and right[2] > 2 * right[0], (left, right)
        assert middle[1] > 1.5 * max(middle[0], middle[2]), middle

        # Colour by category works on the GLB too (its _SEGMENT attribute).
        page.check("input[name=colour][value=category]")
        by_category = viewer_screenshot(page, "engine-viewer-glb-categories.png")
        assert np.abs(by_category - from_glb).max(axis=-1).mean() > 5

        page.check("input[name=source][value=pcld]")
        wait_shown(page, "pcld")

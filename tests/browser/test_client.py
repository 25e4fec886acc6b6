"""The viewer as the reference client, in headless Chromium: the camera as estimated, listen mode
(audio-react.js: a signal of known score through its analyser, and the shader's response on
screen) and the splats view (Spark drawing scene.spz and scene.splat of the same scene).

No stack: a small stand-in for the orchestrator serves the static viewer, pointcloud-lib's two
ES modules under /lib/, /limits (listing scene.spz, as a server with the format registry will)
and one stored generation whose files are made here by the library functions the routes call.
Screenshots go to test-artifacts/browser/ (client-*.png).
"""

from __future__ import annotations

import contextlib
import io
import json
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import pointcloud
from pointcloud import PointCloud, decode, encode, pack_planar, project_planar
from pointcloud.descriptors import describe
from pointcloud.glb import to_glb
from pointcloud.splat import to_splat
from pointcloud.spz import to_spz
from tests.browser.browser import (
    BrowserSession,
    opened_page,
    orchestrator_stand_in,
    viewer_screenshot,
    viewer_shown,
    wait_shown,
)

pytestmark = [pytest.mark.browser]

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "browser"
STATIC = ROOT / "orchestrator" / "src" / "orchestrator" / "static"
PAGES = Path(__file__).parent / "pages"
GENERATION = "c" * 32
WIDTH, HEIGHT = 160, 120
VERTICAL_FOV_DEG = 40.0
BASS_BOX = (slice(35, 85), slice(55, 105))  # rows, columns of the BASS_SUBJECT box
VIEWPORT = {"width": 1100, "height": 760}


def scene() -> PointCloud:
    """A wall 4 m away (LOW_AMBIENT), a box 2.5 m away in the middle (BASS_SUBJECT), seen by a
    camera whose vertical field of view is 40 degrees."""
    depth = np.full((HEIGHT, WIDTH), 4.0, np.float32)
    rgb = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    rgb[:, : WIDTH // 2] = (200, 60, 50)
    rgb[:, WIDTH // 2 :] = (50, 70, 200)
    categories = np.full((HEIGHT, WIDTH), pointcloud.CATEGORY_NAMES.index("LOW_AMBIENT"), np.uint8)
    depth[BASS_BOX], rgb[BASS_BOX] = 2.5, (60, 190, 70)
    categories[BASS_BOX] = pointcloud.CATEGORY_NAMES.index("BASS_SUBJECT")
    focal = HEIGHT / 2 / math.tan(math.radians(VERTICAL_FOV_DEG / 2))
    options = {"depth_is_metric": True, "focal_length_px": focal}
    descriptors = describe(project_planar(depth, rgb, categories, **options))
    return decode(pack_planar(depth, rgb, categories, cloud_id=GENERATION,
                              extra_header={"descriptors": descriptors}, **options))


@pytest.fixture(scope="module")
def site() -> Iterator[tuple[str, PointCloud]]:
    cloud = scene()
    record = {"id": GENERATION, "status": "completed", "prompt": "a box before a wall",
              "mode": "standard", "created_at": "2026-01-01T00:00:00Z",
              "point_count": cloud.count}
    png = io.BytesIO()
    Image.new("RGB", (8, 6), (60, 190, 70)).save(png, format="PNG")
    base = f"/generations/{GENERATION}"
    step = 1 / cloud.header["camera"]["fy"]
    js = pointcloud.js_decoder_path().parent
    files = {
        "/lib/pcld.js": ((js / "pcld.js").read_bytes(), "text/javascript"),
        "/lib/audio-react.js": ((js / "audio-react.js").read_bytes(), "text/javascript"),
        "/limits": (json.dumps({"formats": [{"name": "pointcloud.bin"},
                                            {"name": "scene.glb",
                                             "geometry": ["points", "mesh"]},
                                            {"name": "scene.splat"}, {"name": "scene.spz"}]})
                    .encode(), "application/json"),
        "/generations": (json.dumps({"items": [record], "total": 1, "limit": 12, "offset": 0})
                         .encode(), "application/json"),
        base: (json.dumps(record).encode(), "application/json"),
        f"{base}/pointcloud.bin": (bytes(encode(
            cloud, mode="planar", cloud_id=GENERATION, camera=cloud.header["camera"],
            extra_header={"descriptors": cloud.header["descriptors"]})),
            "application/octet-stream"),
        f"{base}/scene.splat": (to_splat(cloud, step), "application/octet-stream"),
        f"{base}/scene.spz": (to_spz(cloud, step), "application/octet-stream"),
        f"{base}/image.png": (png.getvalue(), "image/png"),
        f"{base}/scene.glb?geometry=mesh": (to_glb(cloud, geometry="mesh"), "model/gltf-binary"),
        "/engine-listen.html": ((PAGES / "engine-listen.html").read_bytes(), "text/html"),
    }
    with orchestrator_stand_in(files) as url:
        yield url, cloud


@contextlib.contextmanager
def viewer_page(browser: BrowserSession, url: str) -> Iterator[object]:
    """The viewer with the generation open; fails on any console error in it."""
    with opened_page(browser, f"{url}#g={GENERATION}", viewport=VIEWPORT,
                     ready=viewer_shown("pcld")) as page:
        yield page


def test_the_first_view_has_the_estimated_field_of_view(browser: BrowserSession, site) -> None:
    url, _cloud = site
    with viewer_page(browser, url) as page:
        fov = page.evaluate("sceneViewer.camera.fov")
        position = page.evaluate("sceneViewer.camera.position.toArray()")
    assert fov == pytest.approx(VERTICAL_FOV_DEG, abs=1e-6)
    assert position == pytest.approx([0, 0, 0], abs=1e-9)  # from the capture camera


# The known score: silence, a 60 Hz kick at 1.0 s, silence, 8 kHz noise from 2.0 to 2.4 s.
# Rendered offline and fed, one 60th of a second at a time, through audio-react.js's AudioReact
# (its AnalyserNode, its tracker): the path listen mode takes each frame.
KICK_S, NOISE_S, NOISE_END_S, LENGTH_S, FRAME_S = 1.0, 2.0, 2.4, 2.8, 1 / 60
ANALYSE = """async ([kickAt, noiseAt, noiseEnd, length, frame]) => {
  const audio = await import('audio-react');
  const rate = 48000;
  const context = new OfflineAudioContext(1, Math.ceil(length * rate), rate);
  const react = new audio.AudioReact(context, sceneViewer.header.categories);
  react.analyser.connect(context.destination);
  // A 60 Hz sine under a 4 ms attack and a 0.3 s decay.
  const kick = context.createOscillator();
  kick.frequency.value = 60;
  const kickGain = context.createGain();
  kickGain.gain.setValueAtTime(0, kickAt);
  kickGain.gain.linearRampToValueAtTime(0.8, kickAt + 0.004);
  kickGain.gain.exponentialRampToValueAtTime(0.001, kickAt + 0.3);
  kickGain.gain.setValueAtTime(0, kickAt + 0.31);
  kick.connect(kickGain).connect(react.input);
  kick.start(kickAt);
  kick.stop(kickAt + 0.32);
  // White noise through two 8 kHz band-passes.
  const noise = context.createBufferSource();
  noise.buffer = audio.noiseBuffer(context, noiseEnd - noiseAt);
  let node = noise;
  for (let i = 0; i < 2; i += 1) {
    const band = context.createBiquadFilter();
    band.type = 'bandpass';
    band.frequency.value = 8000;
    band.Q.value = 1.5;
    node = node.connect(band);
  }
  const noiseGain = context.createGain();
  noiseGain.gain.value = 2;
  node.connect(noiseGain).connect(react.input);
  noise.start(noiseAt);
  const frames = [];
  for (let t = frame; t < length - frame; t += frame) {
    context.suspend(t).then(() => {
      const drives = Array.from(react.sample(context.currentTime));
      frames.push({ t: context.currentTime, drives });
      context.resume();
    });
  }
  await context.startRendering();
  return { categories: sceneViewer.header.categories, frames };
}"""


def analysed(page) -> tuple[list[str], np.ndarray, np.ndarray]:
    result = page.evaluate(ANALYSE, [KICK_S, NOISE_S, NOISE_END_S, LENGTH_S, FRAME_S])
    times = np.array([f["t"] for f in result["frames"]])
    drives = np.array([f["drives"] for f in result["frames"]])
    return result["categories"], times, drives


def test_listen_drives_follow_a_known_score(browser: BrowserSession, site) -> None:
    url, _cloud = site
    with viewer_page(browser, url) as page:
        categories, times, drives = analysed(page)
    drive = {name: drives[:, i] for i, name in enumerate(categories)}
    idle = (times > 0.5) & (times < 0.95)
    kick = (times >= KICK_S) & (times < KICK_S + 0.15)
    noise = (times >= NOISE_S) & (times < NOISE_END_S)

    def rise(name: str, during: np.ndarray) -> float:
        return float(drive[name][during].max() / drive[name][idle].mean())

    print("\nlisten drives over idle: " + ", ".join(
        f"{name} kick {rise(name, kick):.3g}x noise {rise(name, noise):.3g}x"
        for name in categories))
    for name in ("BASS_SUBJECT", "BEAT_GROUND"):
        assert rise(name, kick) >= 3, name
        assert rise(name, noise) <= 1.5, name
    assert rise("HIGH_SKY", noise) >= 3
    assert rise("HIGH_SKY", kick) <= 1.5


def test_listen_moves_the_bass_points_on_screen(browser: BrowserSession, site) -> None:
    """The drives at the kick and at rest (from the analysis above) through the viewer's
    patched shader: the picture changes where the BASS_SUBJECT box is, not elsewhere."""
    url, _cloud = site
    with viewer_page(browser, url) as page:
        categories, times, drives = analysed(page)
        at_kick = drives[np.argmax(drives[:, categories.index("BASS_SUBJECT")])].tolist()
        at_rest = drives[np.searchsorted(times, 0.9)].tolist()
        page.evaluate("""async () => {
            const audio = await import('audio-react');
            window.__react = { uniforms: audio.audioReactUniforms(), sample() {} };
            sceneViewer.startListening(window.__react, audio);
        }""")
        show = "d => window.__react.uniforms.uAudioDrive.value.set(d)"
        page.evaluate(show, at_rest)
        rest = viewer_screenshot(page, "client-listen-rest.png")
        page.evaluate(show, at_kick)
        kick = viewer_screenshot(page, "client-listen-kick.png")
        page.evaluate("sceneViewer.stopListening()")
    changed = np.abs(kick - rest).max(axis=-1) > 30
    # Where the box is on screen: its green, in the picture at rest.
    box = (rest[..., 1] > 120) & (rest[..., 0] < 120) & (rest[..., 2] < 120)
    assert box.mean() > 0.03, "the bass box is not on screen"
    rows, cols = np.nonzero(box)
    near = np.zeros_like(box)
    pad = 40
    near[max(rows.min() - pad, 0) : rows.max() + pad,
         max(cols.min() - pad, 0) : cols.max() + pad] = True
    print(f"\nchanged pixels: {changed[near].mean():.1%} around the bass box, "
          f"{changed[~near].mean():.2%} elsewhere")
    # The wall (LOW_AMBIENT, the slow level) swells a little too; the box far more.
    assert changed[near].mean() > 0.3
    assert changed[~near].mean() < changed[near].mean() / 5


def test_spark_draws_the_spz_and_the_splat_alike(browser: BrowserSession, site) -> None:
    url, cloud = site
    with viewer_page(browser, url) as page:
        page.check("input[name=source][value=splats]")
        wait_shown(page, "splats")
        # The server lists scene.spz (/limits), so the view asks for it.
        assert page.get_attribute("#viewer", "data-splat-asset") == "scene.spz"
        assert int(page.get_attribute("#viewer", "data-point-count")) == cloud.count
        page.evaluate("() => new Promise(r => setTimeout(r, 500))")
        from_spz = viewer_screenshot(page, "client-splats-spz.png")
        count = page.evaluate(f"""async () => {{
            const {{ showSplats }} = await import('./js/splats.js');
            return showSplats(sceneViewer, 'generations/{GENERATION}/scene.splat', 'splat');
        }}""")
        assert count == cloud.count
        page.evaluate("() => new Promise(r => setTimeout(r, 500))")
        from_splat = viewer_screenshot(page, "client-splats-splat.png")
    for pixels in (from_spz, from_splat):
        covered = pixels.max(axis=-1) > 40
        assert covered.mean() > 0.5, f"the splats cover {covered.mean():.0%} of the view"
        # The scene, not a smear: red wall on the left, blue on the right, the green box.
        height, width = covered.shape
        left = pixels[height // 4 : -height // 4, width // 8 : width // 4].reshape(-1, 3)
        right = pixels[height // 4 : -height // 4, -width // 4 : -width // 8].reshape(-1, 3)
        middle = pixels[height // 2 - 8 : height // 2 + 8, width // 2 - 8 : width // 2 + 8]
        left, right = left.mean(axis=0), right.mean(axis=0)
        middle = middle.reshape(-1, 3).mean(axis=0)
        assert left[0] > 2 * left[2] and right[2] > 2 * right[0], (left, right)
        assert middle[1] > 1.5 * max(middle[0], middle[2]), middle
    # The same Gaussians, SPZ-quantised: the same picture within a little.
    difference = np.abs(from_spz - from_splat).max(axis=-1)
    print(f"\nSpark, scene.spz against scene.splat: mean difference {difference.mean():.2f} "
          f"levels, {(difference > 30).mean():.2%} of pixels over 30")
    assert difference.mean() < 4


def test_the_listen_control_plays_the_built_in_beat_into_the_scene(
    browser: BrowserSession, site
) -> None:
    url, _cloud = site
    with viewer_page(browser, url) as page:
        page.select_option("#listen-source", "beat")
        page.wait_for_selector('#viewer[data-listening="beat"]', state="attached")
        # The kicks reach the analyser: the bass drive rises well over its idle level.
        page.wait_for_function(
            "() => sceneViewer.audioReact.tracker.drives["
            "sceneViewer.header.categories.indexOf('BASS_SUBJECT')] >= 3", timeout=30_000)
        # The meter is redrawn on the next frames, not at once: wait for it, do not race it.
        page.wait_for_function(
            "() => (document.querySelector('#listen-meter').textContent || '').includes('bass')",
            timeout=30_000)
        page.select_option("#listen-source", "off")
        assert page.get_attribute("#viewer", "data-listening") is None
        assert not page.evaluate("sceneViewer.listening")


def test_the_mesh_choice_shows_the_scene_as_triangles(browser: BrowserSession, site) -> None:
    """Offered because /limits lists meshes for scene.glb (a server without it hides it)."""
    url, cloud = site
    with viewer_page(browser, url) as page:
        assert page.is_visible("#source-mesh-label")
        from_points = viewer_screenshot(page, "client-points.png")
        page.check("input[name=source][value=mesh]")
        wait_shown(page, "mesh")
        assert int(page.get_attribute("#viewer", "data-point-count")) == cloud.count
        from_mesh = viewer_screenshot(page, "client-mesh.png")
    covered = from_mesh.max(axis=-1) > 40
    assert covered.mean() > 0.5, f"the mesh covers {covered.mean():.0%} of the view"
    # The same picture as the points from the capture camera, less their soft edges.
    assert np.median(np.abs(from_mesh - from_points).max(axis=-1)) < 10


def test_an_engine_needs_twenty_lines(browser: BrowserSession, site) -> None:
    """pages/engine-listen.html: the README's lines for an engine (pcld.js, audio-react.js, a
    stock PointsMaterial) make a cloud react to the built-in beat."""
    url, cloud = site
    context = browser.browser.new_context(viewport={"width": 640, "height": 480})
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(f"uncaught: {error}"))
    try:
        page.goto(f"{url}engine-listen.html?cloud=generations/{GENERATION}/pointcloud.bin")
        page.wait_for_selector("body[data-started=true]", state="attached", timeout=60_000)
        page.mouse.click(320, 240)
        page.wait_for_selector("body[data-done=true]", state="attached", timeout=60_000)
        result = page.evaluate("window.result")
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        png = page.screenshot(path=str(ARTIFACTS / "client-engine-listen.png"))
    finally:
        context.close()
    assert not errors, errors
    assert result["points"] == cloud.count
    assert result["peakBassDrive"] >= 3, result
    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    assert (pixels.max(axis=-1) > 40).mean() > 0.3, "the engine page drew nothing"

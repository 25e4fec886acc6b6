"""The built-in web viewer in a real headless Chromium, against the running stack.

One browser for the module; each test opens its own page and fails on any console error or
uncaught exception in it. Screenshots go to ``test-artifacts/browser/`` for a person to look at.
"""

from __future__ import annotations

import io
import json
import math
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.browser.browser import BrowserSession, serve_bytes

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "browser"
BACKGROUND = np.array([0x0B, 0x0D, 0x12])
JOB_TIMEOUT_MS = 90_000
# viewer.js uploads a cloud to the GPU this many points a frame (SLICE_POINTS there).
SLICE_POINTS = 1 << 18


@pytest.fixture(scope="module")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


def viewer_pixels(page, path: Path) -> np.ndarray:
    """Screenshot the 3D view (saved as an artifact) and return it as an RGB array."""
    png = page.locator("#viewer").screenshot(path=str(path))
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(np.int16)


def covered_fraction(pixels: np.ndarray) -> float:
    """Share of the view that is not the clear colour: 0 for a blank canvas."""
    differs = np.abs(pixels - BACKGROUND).max(axis=-1) > 24
    return float(differs.mean())


def near_palette_fraction(pixels: np.ndarray, palette: list[list[int]]) -> float:
    """Share of the covered pixels whose colour is one of the palette's (within a small error)."""
    covered = pixels[np.abs(pixels - BACKGROUND).max(axis=-1) > 24]
    if len(covered) == 0:
        return 0.0
    distance = np.abs(covered[:, None, :] - np.asarray(palette)[None, :, :]).max(axis=-1)
    return float((distance.min(axis=1) <= 12).mean())


def watch_progress(page) -> None:
    """Record every stage label and bar value the page shows, so the test can check the path."""
    page.evaluate(
        """() => {
            window.__progressSeen = [];
            const record = () => window.__progressSeen.push({
                label: document.getElementById('progress-stage').textContent,
                value: document.getElementById('progress-bar').value,
                status: document.getElementById('progress').dataset.status || '',
            });
            new MutationObserver(record).observe(document.getElementById('progress'),
                {subtree: true, childList: true, characterData: true, attributes: true});
        }"""
    )


def wait_for_job_end(page) -> str:
    page.wait_for_function(
        "() => ['completed', 'failed', 'cancelled', 'error']"
        ".includes(document.getElementById('progress').dataset.status)",
        timeout=JOB_TIMEOUT_MS,
    )
    return page.get_attribute("#progress", "data-status")


def wait_for_loaded(page, generation_id: str | None = None) -> None:
    condition = "v.dataset.state === 'loaded'"
    if generation_id:
        condition += f" && v.dataset.generationId === {json.dumps(generation_id)}"
    page.wait_for_function(
        f"() => {{ const v = document.getElementById('viewer'); return {condition}; }}",
        timeout=JOB_TIMEOUT_MS,
    )
    # The frame is drawn on the next animation frame; wait for two so it is on screen.
    page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")


def submit_prompt(
    page, prompt: str, *, vibe: str = "", mode: str = "standard", key: str = "sk-test"
) -> None:
    page.fill("#prompt", prompt)
    page.fill("#vibe", vibe)
    page.fill("#api-key", key)
    page.check(f"input[name=mode][value={mode}]")
    page.click("#submit")


def test_prompt_to_rendered_cloud_then_colouring_and_gallery(
    browser: BrowserSession, base_url: str, artifacts: Path, shared_images: dict[str, Path]
) -> None:
    page = browser.new_page(base_url)

    # A prompt through the fake OpenAI server: progress must go through the stages to completion.
    watch_progress(page)
    submit_prompt(page, "a quiet forest lake at dawn", vibe="dreamy")
    assert wait_for_job_end(page) == "completed", page.text_content("#message")
    seen = page.evaluate("window.__progressSeen")
    labels = {entry["label"] for entry in seen}
    pipeline_labels = ("estimating depth", "finding audio", "building")
    assert any(label.startswith(pipeline_labels) for label in labels), seen
    assert max(entry["value"] for entry in seen) == 1
    first_id = page.get_attribute("#progress", "data-job-id")

    wait_for_loaded(page, first_id)
    # The header names the projection (pointcloud-lib/FORMAT.md): planar or equirect.
    assert page.get_attribute("#viewer", "data-mode") == "planar"
    assert int(page.get_attribute("#viewer", "data-point-count")) > 1000
    rgb = viewer_pixels(page, artifacts / "1-prompt-rgb.png")
    assert covered_fraction(rgb) > 0.2, "the canvas is blank after loading the cloud"
    assert rgb.reshape(-1, 3).std(axis=0).max() > 10, "the cloud rendered as one flat colour"

    # Colour by audio category: the view changes, and shows the server's palette.
    palette = page.evaluate("sceneViewer.header.palette")
    assert palette and len(palette) == 6, "the point cloud header carries no category palette"
    legend = page.locator("#legend li .legend-name").all_text_contents()
    categories = page.evaluate("sceneViewer.header.categories")
    assert legend == [name.lower().replace("_", " ") for name in categories]
    # The audio descriptors: each category's share of the points and its mean distance.
    descriptors = page.evaluate("sceneViewer.header.descriptors.categories")
    for text, described in zip(page.locator("#legend li .legend-stats").all_text_contents(),
                               descriptors, strict=True):
        assert (text == "—") if not described["count"] else (
            f"{described['distance']['mean']:.1f} m" in text and "%" in text), text
    page.check("input[name=colour][value=category]")
    page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
    by_category = viewer_pixels(page, artifacts / "2-prompt-categories.png")
    assert covered_fraction(by_category) > 0.2
    assert np.abs(by_category - rgb).max(axis=-1).mean() > 5, "switching colouring changed nothing"
    assert near_palette_fraction(by_category, palette) > 0.8

    # A photo upload makes a second generation; then reopen the first one from the gallery.
    page.check("input[name=colour][value=rgb]")
    page.fill("#api-key", "")
    page.set_input_files("#image", str(shared_images["animal_cat_chelsea"]))
    page.click("#submit")
    assert wait_for_job_end(page) == "completed", page.text_content("#message")
    second_id = page.get_attribute("#progress", "data-job-id")
    wait_for_loaded(page, second_id)
    viewer_pixels(page, artifacts / "3-upload-rgb.png")

    page.locator(f'#gallery li[data-id="{first_id}"] a').click()
    wait_for_loaded(page, first_id)
    reopened = viewer_pixels(page, artifacts / "4-reopened-from-gallery.png")
    assert covered_fraction(reopened) > 0.2
    assert page.locator(f'#gallery li[data-id="{second_id}"]').count() == 1
    for link, asset in (("#download-ply", "pointcloud.ply"), ("#download-bin", "pointcloud.bin"),
                        ("#download-glb", "scene.glb"), ("#download-splat", "scene.splat"),
                        ("#download-gsply", "gaussians.ply")):
        assert page.get_attribute(link, "href").endswith(f"/generations/{first_id}/{asset}")
    page.screenshot(path=str(artifacts / "5-page.png"))

    browser.assert_no_console_errors(page)


def test_cancel_and_api_errors_are_shown_in_words(browser: BrowserSession, base_url: str) -> None:
    page = browser.new_page(base_url)

    # A prompt without a key: the API's 401 reaches the person as a sentence, not a silent fail.
    submit_prompt(page, "a lighthouse in a storm", key="")
    page.wait_for_selector("#message:not([hidden])")
    message = page.text_content("#message")
    assert "401" in message and len(message) > 20, message
    assert page.is_enabled("#submit")

    # Cancel straight after submitting: the job ends cancelled (queued or mid-pipeline).
    submit_prompt(page, "a desert road at night", mode="panorama")
    page.wait_for_selector("#cancel:not([hidden])")
    page.wait_for_function("() => document.getElementById('progress').dataset.jobId")
    page.click("#cancel")
    status = wait_for_job_end(page)
    assert status == "cancelled", page.text_content("#message")
    assert "cancelled" in page.text_content("#message")

    # The 401 above is the one console error this page may have (the failed fetch it logs).
    browser.assert_no_console_errors(page, allowed=["status of 401"])


def test_quick_look_shows_the_draft_first_then_the_requested_quality(
    browser: BrowserSession, base_url: str, artifacts: Path, viewer_stack
) -> None:
    page = browser.new_page(base_url)
    assert page.is_checked("#quick-look") and page.input_value("#quality") == "standard"
    submitted: list[dict] = []
    page.on("request", lambda r: submitted.append(json.loads(r.post_data))
            if r.method == "POST" and r.url.endswith("/jobs") else None)
    # Every generation the view finishes showing, in order.
    page.evaluate(
        """() => {
            window.__shown = [];
            const viewer = document.getElementById('viewer');
            new MutationObserver(() => {
                const id = viewer.dataset.generationId;
                if (viewer.dataset.state === 'loaded' && window.__shown.at(-1) !== id) {
                    window.__shown.push(id);
                }
            }).observe(viewer, {attributes: true});
        }"""
    )
    submit_prompt(page, "a harbour at dusk")
    assert wait_for_job_end(page) == "completed", page.text_content("#message")
    final_id = page.get_attribute("#progress", "data-job-id")
    draft_id = page.get_attribute("#progress", "data-draft-job-id")
    wait_for_loaded(page, final_id)
    viewer_pixels(page, artifacts / "7-quick-look-then-standard.png")

    assert page.evaluate("window.__shown") == [draft_id, final_id]
    assert [body.get("quality") for body in submitted] == ["draft", "standard"]
    assert all(body.get("edges") == "drop" for body in submitted)
    # The server's own records of the two requests.
    records = page.evaluate("ids => Promise.all(ids.map(id => fetch(`generations/${id}`)"
                            ".then(r => r.json())))", [draft_id, final_id])
    assert [r["quality"] for r in records] == ["draft", "standard"]
    assert records[0]["point_count"] < records[1]["point_count"]  # every 2nd pixel in a draft
    # And in the server's log, the draft asked for as such.
    log = viewer_stack.log("orchestrator")
    assert f"job {draft_id} queued (prompt, standard, quality=draft)" in log
    assert f"job {final_id} queued (prompt, standard, quality=standard)" in log
    browser.assert_no_console_errors(page)


def test_two_million_point_panorama_loads_without_freezing(
    browser: BrowserSession, base_url: str, artifacts: Path, big_panorama: bytes
) -> None:
    """Served by the test in place of a stored generation, to time the page alone."""
    with serve_bytes(big_panorama) as url:
        page = browser.new_page(base_url, route_generation=("perf-2m", url))
        _open_big_panorama(page, big_panorama, artifacts)
    browser.assert_no_console_errors(page)


def _open_big_panorama(page, big_panorama: bytes, artifacts: Path) -> None:
    page.evaluate(
        """() => {
            window.__longTasks = [];
            new PerformanceObserver(list => {
                for (const e of list.getEntries()) window.__longTasks.push(e.duration);
            }).observe({type: 'longtask', buffered: true});
            // How many slices of the cloud are in the scene, frame by frame: the upload must
            // hand the main thread back between its slices (each frame sees one more), or the
            // page freezes until the whole cloud is on the GPU (0, then all of them).
            window.__slicesSeen = new Set();
            const look = () => {
                const slices = window.sceneViewer.points?.children?.length ?? 0;
                window.__slicesSeen.add(slices);
                if (document.getElementById('viewer').dataset.state !== 'loaded') {
                    requestAnimationFrame(look);
                }
            };
            requestAnimationFrame(look);
        }"""
    )
    started = time.perf_counter()
    page.evaluate("location.hash = 'g=perf-2m'")
    wait_for_loaded(page, "perf-2m")
    load_s = time.perf_counter() - started
    slices_seen = page.evaluate("[...window.__slicesSeen].filter(n => n > 0).length")
    timing = page.evaluate("({...document.getElementById('viewer').dataset})")
    count = int(timing["pointCount"])
    # Main-thread blocking during the load itself (measureFrames below blocks on purpose).
    long_tasks = page.evaluate("window.__longTasks")
    frames = page.evaluate("sceneViewer.measureFrames(5)")
    pixels = viewer_pixels(page, artifacts / "6-panorama-2m.png")

    print(
        f"\n2M-point panorama in headless Chromium (SwiftShader, software WebGL): "
        f"{count:,} points, {len(big_panorama) / 1e6:.1f} MB; fetch {timing['fetchMs']} ms, "
        f"decode {timing['decodeMs']} ms, GPU upload {timing['uploadMs']} ms (in slices), "
        f"first whole frame {timing['firstFrameMs']} ms, "
        f"link to first frame {load_s * 1000:.0f} ms; frame mean {frames['mean']:.0f} ms, "
        f"max {frames['max']:.0f} ms over {frames['frames']} frames; while loading, longest "
        f"main-thread task {max(long_tasks, default=0):.0f} ms ({len(long_tasks)} over 50 ms), "
        f"{slices_seen} frames with a part of the cloud on screen"
    )
    assert count == 2048 * 1024
    # Not frozen: the page drew a frame after each upload slice of 262,144 points (a single
    # blocking upload would show none of the partial clouds). A count, not a time: SwiftShader's
    # speed depends on the machine's load.
    assert slices_seen >= math.ceil(count / SLICE_POINTS) - 1, slices_seen
    assert page.get_attribute("#viewer", "data-mode") == "equirect"
    assert covered_fraction(pixels) > 0.9, "from the centre of the sphere the view is full"

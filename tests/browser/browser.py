"""Debian's Chromium, headless, driven by playwright's Python client.

``playwright install`` would download a browser build of its own from a CDN; instead the test uses
the distribution's ``/usr/bin/chromium`` (``scripts/ensure_browser.sh`` installs it), so the test
runs offline. WebGL then runs on SwiftShader, Chromium's software renderer.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import io
import json
import os
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from scene_dev.pcld_chromium import QuietHandler, serve

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    # With the GPU off, WebGL needs SwiftShader; newer Chromium only falls back to it when told.
    "--use-angle=swiftshader",
    "--enable-unsafe-swiftshader",
]
VIEWPORT = {"width": 1280, "height": 800}
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "browser"
STATIC = ROOT / "orchestrator" / "src" / "orchestrator" / "static"
PAGE_READY_TIMEOUT_MS = 30_000


def chromium_or_skip() -> Path:
    """The browser's path; skips loudly when it is missing (and fails in CI, which must run it)."""
    if CHROMIUM.exists():
        return CHROMIUM
    reason = (
        f"BROWSER TEST NOT RUN: {CHROMIUM} is missing. Run scripts/ensure_browser.sh "
        "(apt-get install chromium) to drive the web viewer in a real browser."
    )
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


@dataclass
class BrowserSession:
    browser: object
    console: dict[int, list[str]] = field(default_factory=dict)

    def new_page(self, base_url: str, *, route_generation: tuple[str, str] | None = None):
        """Open the viewer in a fresh context (empty localStorage) and wait until it has started.

        ``route_generation=(id, url)`` serves that generation's cloud from ``url`` instead of the
        stack, to time the page on a cloud the stack would take minutes to make on a CPU.
        """
        context = self.browser.new_context(viewport=VIEWPORT)
        page = context.new_page()
        messages: list[str] = []
        self.console[id(page)] = messages
        page.on("console", lambda m: messages.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda error: messages.append(f"uncaught: {error}"))
        if route_generation:
            _route_generation(page, *route_generation)
        page.goto(base_url)
        page.wait_for_selector("body[data-ready=true]", state="attached",
                               timeout=PAGE_READY_TIMEOUT_MS)
        return page

    def assert_no_console_errors(self, page, allowed: list[str] = ()) -> None:
        errors = [m for m in self.console[id(page)] if not any(a in m for a in allowed)]
        assert not errors, f"console errors in the page: {errors}"


def _route_generation(page, generation_id: str, pointcloud_url: str) -> None:
    metadata = {"id": generation_id, "prompt": "2M-point test panorama", "mode": "panorama",
                "status": "completed", "created_at": "2024-01-01T00:00:00Z"}
    page.route(f"**/generations/{generation_id}",
               lambda route: route.fulfill(status=200, content_type="application/json",
                                           body=json.dumps(metadata)))
    # A redirect to a real HTTP server: a body fulfilled through playwright crosses its driver's
    # pipe as text and would take seconds, which would swamp the page's own timings.
    # Any query (the viewer asks for ?format=grid).
    cloud_path = f"/generations/{generation_id}/pointcloud.bin"
    page.route(lambda url: url.split("?")[0].endswith(cloud_path),
               lambda route: route.fulfill(status=307, headers={"Location": pointcloud_url}))


class _OneFileHandler(http.server.BaseHTTPRequestHandler):
    body = b""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(self.body)))
        # The page's origin is the stack's; this server is another origin.
        self.send_header("Access-Control-Allow-Origin", "*")
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args) -> None:
        pass


@contextlib.contextmanager
def serve_bytes(body: bytes) -> Iterator[str]:
    """Serve ``body`` at a loopback URL (any path) until the block ends."""
    with serve(type("Handler", (_OneFileHandler,), {"body": body})) as base:
        yield f"{base}pointcloud.bin"


class _StandInHandler(QuietHandler):
    """The static viewer, and ``files`` (path -> (body, media type)) above it; a path may be
    listed with its query (``scene.glb?geometry=mesh``). The server's own routes that are not
    listed answer 404, as an orchestrator without them would."""

    def __init__(self, *args, files: dict[str, tuple[bytes, str]], **kwargs) -> None:
        self.files = files
        super().__init__(*args, directory=str(STATIC), **kwargs)

    def do_GET(self) -> None:
        path = urllib.parse.urlsplit(self.path).path
        path = self.path if self.path in self.files else path
        if path in self.files:
            body, media_type = self.files[path]
            self.send_response(200)
            self.send_header("Content-Type", media_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        elif path.startswith(("/generations", "/lib/", "/limits")):
            self.send_error(404, "not served by the stand-in")
        else:
            super().do_GET()


@contextlib.contextmanager
def orchestrator_stand_in(files: dict[str, tuple[bytes, str]]) -> Iterator[str]:
    """The orchestrator as the viewer sees it, without a stack: its static viewer and the given
    routes (``/lib/pcld.js``, ``/limits``, ``/generations``, a generation's files); its URL."""
    with serve(functools.partial(_StandInHandler, files=files)) as url:
        yield url


@contextlib.contextmanager
def opened_page(browser: BrowserSession, url: str, *, viewport: dict[str, int],
                ready: str, timeout_ms: int = 90_000,
                requested: list[str] | None = None) -> Iterator[object]:
    """A page at ``url`` in a fresh context, once ``ready`` (a selector) is attached; fails on
    any console error or uncaught exception in it. ``requested`` collects every URL it asks for.
    """
    context = browser.browser.new_context(viewport=viewport)
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(f"uncaught: {error}"))
    if requested is not None:
        page.on("request", lambda request: requested.append(request.url))
    try:
        page.goto(url)
        page.wait_for_selector(ready, state="attached", timeout=timeout_ms)
        yield page
        assert not errors, f"console errors in the page: {errors}"
    finally:
        context.close()


def viewer_shown(source: str) -> str:
    """The selector of the viewer once it shows a scene read from ``source`` (pcld, glb, ...)."""
    return f'#viewer[data-state="loaded"][data-source="{source}"]'


def wait_shown(page, source: str, timeout_ms: int = 90_000) -> None:
    page.wait_for_selector(viewer_shown(source), state="attached", timeout=timeout_ms)


def viewer_screenshot(page, name: str) -> np.ndarray:
    """The viewer's canvas after two frames, saved as test-artifacts/browser/``name``."""
    page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    png = page.locator("#viewer").screenshot(path=str(ARTIFACTS / name))
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(np.int16)


@contextlib.contextmanager
def launch_chromium() -> Iterator[BrowserSession]:
    executable = chromium_or_skip()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        # launch() gives the browser a fresh temporary profile (user-data-dir) and removes it
        # afterwards: no cache, cookies or storage carry over between runs.
        browser = playwright.chromium.launch(
            executable_path=str(executable), headless=True, args=CHROMIUM_FLAGS
        )
        try:
            yield BrowserSession(browser)
        finally:
            browser.close()

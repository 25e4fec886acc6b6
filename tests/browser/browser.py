"""Debian's Chromium, headless, driven by playwright's Python client.

``playwright install`` would download a browser build of its own from a CDN; instead the test uses
the distribution's ``/usr/bin/chromium`` (``scripts/ensure_browser.sh`` installs it), so the test
runs offline. WebGL then runs on SwiftShader, Chromium's software renderer.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

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
    handler = type("Handler", (_OneFileHandler,), {"body": body})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/pointcloud.bin"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


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

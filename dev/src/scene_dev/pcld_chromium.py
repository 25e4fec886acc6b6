"""Decode PCLD buffers with pointcloud-lib's js/pcld.js in Debian's headless Chromium (driven by
playwright, as tests/browser does): the grid variant needs the browser's own image decoders,
which node lacks.

Used by pointcloud-lib's tests/test_js_grid.py and bench/bench_grid.py.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import json
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
PAGE = Path(__file__).with_name("pcld_grid_page.html")


def chromium_missing() -> str | None:
    """Why the browser cannot run here, or None."""
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is missing (scripts/ensure_browser.sh installs it)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (scripts/requirements/dev.txt)"
    return None


@contextlib.contextmanager
def serve(handler: Callable[..., http.server.BaseHTTPRequestHandler]) -> Iterator[str]:
    """A loopback HTTP server of ``handler`` (a request handler class, or a factory of one) on a
    free port, in a thread, for the block; its base URL, ending in ``/``."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@contextlib.contextmanager
def serve_folder(folder: Path) -> Iterator[str]:
    """A loopback HTTP server of ``folder`` (pages load their scripts over http://)."""
    with serve(functools.partial(QuietHandler, directory=str(folder))) as url:
        yield url


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    """Serves files without logging every request."""

    def log_message(self, *args) -> None:
        pass


def decode_in_chromium(
    decoder: Path,
    cases: dict[str, bytes],
    *,
    full: bool = True,
    repeat: int = 1,
    image_decoder: bool = True,
) -> dict[str, dict]:
    """name -> what the page's decodePointCloudAsync gave: ``{count, header, positions, colors,
    segments}`` (plain lists when ``full``), ``ms`` (each of ``repeat`` decodes, the fetch not
    included), or ``{error}``. ``image_decoder=False`` hides WebCodecs' ImageDecoder from the
    page, as a browser without it (or an insecure origin) would: the canvas path runs."""
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        shutil.copy(decoder, root / "pcld.js")
        shutil.copy(PAGE, root / "index.html")
        names = {}
        for index, (name, buffer) in enumerate(cases.items()):
            (root / f"case{index}.pcld").write_bytes(buffer)
            names[name] = f"case{index}.pcld"
        with serve_folder(root) as url, sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
            try:
                page = browser.new_page()
                if not image_decoder:
                    page.add_init_script("delete globalThis.ImageDecoder")
                page.goto(url + "index.html")
                page.wait_for_function("window.decodeCase !== undefined")
                results = {}
                for name, file in names.items():
                    results[name] = json.loads(
                        page.evaluate(
                            "([f, full, n]) => decodeCase(f, full, n)", [file, full, repeat]
                        )
                    )
                return results
            finally:
                browser.close()

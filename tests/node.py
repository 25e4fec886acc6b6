"""Node and the npm packages of ``tests/js`` (package.json there), for tests that run JavaScript
tools: the Khronos glTF validator, three.js, a splat renderer."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

JS_DIR = Path(__file__).parent / "js"


def js_packages_or_skip(*packages: str) -> Path:
    """``tests/js/node_modules``; skips loudly when node or a package is missing (fails in CI)."""
    missing = [p for p in packages if not (JS_DIR / "node_modules" / p / "package.json").is_file()]
    if shutil.which("node") and not missing:
        return JS_DIR / "node_modules"
    reason = (f"JS TEST NOT RUN: node or the npm packages {missing} are missing. Run "
              "`npm ci --prefix tests/js` (make test does).")
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


def validate_gltf(*paths: Path) -> list[dict[str, Any]]:
    """The Khronos validator's report on each file: errors, warnings, messages."""
    js_packages_or_skip("gltf-validator")
    result = subprocess.run(["node", str(JS_DIR / "validate_gltf.mjs"), *map(str, paths)],
                            capture_output=True, text=True, timeout=120, check=True)
    return json.loads(result.stdout)

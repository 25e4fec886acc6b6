"""Packaging: the browser decoder ships inside the Python package, editable or built as a wheel."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np

import pointcloud
from pointcloud import CATEGORY_NAMES, CATEGORY_PALETTE

PACKAGE_ROOT = Path(__file__).resolve().parent.parent


def test_js_decoder_path_points_at_the_es_module() -> None:
    path = pointcloud.js_decoder_path()
    assert path.name == "pcld.js" and path.is_file()
    assert "export function decodePointCloud" in path.read_text()


def test_the_wheel_ships_the_decoder_and_finds_it(tmp_path: Path) -> None:
    # Build from a copy: an in-tree build would leave build/ and egg-info behind in the checkout.
    source = tmp_path / "src"
    shutil.copytree(
        PACKAGE_ROOT,
        source,
        ignore=shutil.ignore_patterns("tests", "bench", "build", "*.egg-info", "__pycache__"),
    )
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path / "dist"),
            str(source),
        ],
        check=True,
        capture_output=True,
        timeout=240,
    )
    (wheel,) = (tmp_path / "dist").glob("pointcloud_lib-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        archive.extractall(tmp_path / "installed")
    assert {"pointcloud/__init__.py", "pointcloud/js/__init__.py", "pointcloud/js/pcld.js",
            "pointcloud/js/audio-react.js"} <= names

    # The unpacked wheel, ahead of the editable install on the path, finds its own copy.
    found = subprocess.run(
        [sys.executable, "-c", "import pointcloud; print(pointcloud.js_decoder_path())"],
        env={**os.environ, "PYTHONPATH": str(tmp_path / "installed")},
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout.strip()
    assert Path(found) == tmp_path / "installed" / "pointcloud" / "js" / "pcld.js"


def test_category_palette_is_six_distinct_read_only_colours() -> None:
    assert CATEGORY_NAMES == (
        "BASS_SUBJECT",
        "MID_ORGANIC",
        "HIGH_SKY",
        "BEAT_GROUND",
        "MID_STRUCTURE",
        "LOW_AMBIENT",
    )
    assert CATEGORY_PALETTE.shape == (6, 3) and CATEGORY_PALETTE.dtype == np.uint8
    assert len({tuple(c) for c in CATEGORY_PALETTE.tolist()}) == 6
    assert not CATEGORY_PALETTE.flags.writeable

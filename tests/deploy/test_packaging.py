"""The containers install each package as a regular (non-editable) wheel, unlike the editable
development install: every file a package's source holds must be in its wheel, or the service
works here and breaks in its image (a viewer page, a JS decoder, a data table left behind)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# Directory of each installable package -> the import packages its Dockerfile relies on.
PACKAGES = {
    "protos": ["scene", "scene_rpc"],
    "pointcloud-lib": ["pointcloud"],
    "depth-service": ["depth_service"],
    "segment-service": ["segment_service"],
    "imagegen-service": ["imagegen_service"],
    "orchestrator": ["orchestrator"],
}
NOT_SHIPPED = {".pyc"}

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheels(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheels")
    # No build isolation: the venv's setuptools, nothing downloaded.
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "--quiet", "--wheel-dir", str(out), *(str(REPO / p) for p in PACKAGES)],
                   check=True, timeout=300, capture_output=True)
    return out


def source_files(package: str) -> set[str]:
    """Files of an import package as they are laid out in the source tree (editable install)."""
    spec = importlib.util.find_spec(package)
    root = Path(next(iter(spec.submodule_search_locations)))
    return {
        f"{package}/{path.relative_to(root).as_posix()}"
        for path in root.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix not in NOT_SHIPPED
    }


@pytest.mark.parametrize("directory", list(PACKAGES))
def test_the_wheel_holds_every_file_of_the_package(wheels, directory):
    name = directory.replace("-", "_")
    if directory == "protos":
        name = "scene_protos"
    (wheel,) = wheels.glob(f"{name}-*.whl")
    shipped = set(zipfile.ZipFile(wheel).namelist())
    for package in PACKAGES[directory]:
        missing = sorted(source_files(package) - shipped)
        assert not missing, (
            f"{wheel.name} lacks {len(missing)} file(s) of {package}, e.g. {missing[:5]}: "
            f"declare them as package data in {directory}/pyproject.toml")

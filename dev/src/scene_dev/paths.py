"""Where the checkout keeps what the development tools build and read.

scene_dev is installed editable from ``dev/`` (``make install``), so its source sits in the
checkout and the repository root is three folders above this file.
"""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]
TINY_MODELS_DIR = REPO_ROOT / ".cache" / "tiny-models"
FULL_SIZE_DIR = REPO_ROOT / ".cache" / "full-size"

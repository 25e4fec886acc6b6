"""Fixtures and markers shared by every test directory (loaded with ``-p tests.plugin``)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# ``orchestrator/tests`` lives in a folder named like the package it tests: under
# ``--import-mode=importlib`` pytest would register that folder as a namespace package called
# ``orchestrator`` and hide the real one. Importing the real package first (this plugin loads
# before any conftest) keeps the name bound to it.
import orchestrator  # noqa: F401
from scene_dev.paths import REPO_ROOT, TINY_MODELS_DIR

SHARED_DIR = REPO_ROOT.parent / "shared"


def model_in_local_cache(model_id: str) -> bool:
    """True when ``model_id`` (a hub id) is already in the local Hugging Face cache."""
    from huggingface_hub import try_to_load_from_cache

    if Path(model_id).is_dir():
        return True
    found = try_to_load_from_cache(model_id, "config.json")
    return isinstance(found, str) and os.path.exists(found)


def skip_unless_cached(*model_ids: str) -> pytest.MarkDecorator:
    """Mark a test ``real_models`` and skip it, with the reason, unless every model is cached."""
    missing = [m for m in model_ids if not model_in_local_cache(m)]
    reason = f"real weights not in the local Hugging Face cache: {', '.join(missing)}"
    return pytest.mark.skipif(bool(missing), reason=reason)


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED_DIR.is_dir():
        pytest.skip(f"{SHARED_DIR} is missing (the shared test data sits beside the checkout)")
    return SHARED_DIR


@pytest.fixture(scope="session")
def shared_images(shared_dir: Path) -> dict[str, Path]:
    """Real photos by file stem, e.g. ``shared_images["animal_cat_chelsea"]``."""
    folder = shared_dir / "images"
    return {p.stem: p for p in sorted(folder.iterdir()) if p.suffix.lower() in {".png", ".jpg"}}


@pytest.fixture(scope="session")
def tiny_models_dir() -> Path:
    """Tiny random-weight models of the real architectures (``make tiny-models``)."""
    if not (TINY_MODELS_DIR / ".complete").exists():
        pytest.fail(f"{TINY_MODELS_DIR} is missing: run `make tiny-models`")
    return TINY_MODELS_DIR


@pytest.fixture(autouse=True)
def _offline_hub(monkeypatch: pytest.MonkeyPatch) -> None:
    # Tests never reach the internet: a model id that is not local fails fast instead of hanging.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def postgres_server():
    """A PostgreSQL server for the session (Debian's package, a cluster in a temporary
    directory: scene_dev.postgres), stopped and removed at the end."""
    from scene_dev.postgres import PostgresUnavailable, TempPostgres

    try:
        server = TempPostgres()
    except PostgresUnavailable as exc:
        pytest.fail(f"{exc}: run `make test`, or scripts/ensure_postgres.sh")
    with server:
        yield server


@pytest.fixture
def postgres_url(postgres_server, request) -> str:
    """A new, empty database of the session's server, for this test alone."""
    from uuid import uuid4

    return postgres_server.create_database(f"test_{uuid4().hex[:16]}")

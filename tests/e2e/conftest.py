"""Fixtures shared by the end-to-end modules; each module starts its own ``stack``."""

from __future__ import annotations

import httpx
import pytest


@pytest.fixture(scope="module")
def client(stack):
    with httpx.Client(base_url=stack.url, timeout=120) as client:
        yield client


@pytest.fixture(scope="module")
def photo(shared_images) -> bytes:
    return shared_images["animal_cat_chelsea"].read_bytes()

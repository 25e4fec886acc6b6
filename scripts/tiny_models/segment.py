"""Tiny random-weight segment models (filled in by the segment-service work)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

BUILDERS: dict[str, Callable[[Path], None]] = {}

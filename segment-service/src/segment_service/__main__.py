"""``python -m segment_service``: the shared bootstrap (``scene_rpc.service.main``)."""

from __future__ import annotations

from scene_rpc.service import main as run
from segment_service import NAME
from segment_service.settings import Settings


def main() -> None:
    run(NAME, Settings, "segment_service.server:build")


if __name__ == "__main__":
    main()
